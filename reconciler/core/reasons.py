"""Why a step failed, as stable strings, and what happens next for each: the one table.

The journal's `failed` records, `hotswap status` and the metric label
`hotswap_step_failures_total{step,reason,next}` all carry these strings, so they never change
once released. What happens next is decided per reason, not per exception class (a failed load
and a damaged build artifact are both "runtime" failures, but one condemns the version and the
other only the local copy). An exception class still gives the default for a reason that is not
in the table, so a new reason raised somewhere is handled sensibly before it is listed here.

| next         | what the loop does                                                               |
|--------------|----------------------------------------------------------------------------------|
| `retry`      | back off (doubling, with jitter) and plan again; the version is not condemned     |
| `repair`     | local state was damaged: what was bad is already discarded; plan again at once    |
|              | (refetch, rebuild) — never a reason to quarantine the version                    |
| `budget`     | unexpected: retried with backoff up to `UNEXPECTED_BUDGET` times in a row, then   |
|              | quarantined with the traceback journaled                                         |
| `quarantine` | terminal for this desired digest: not tried again until desired state changes or |
|              | an operator runs `hotswap retry`                                                 |
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.core.names import Name


class Next(Name):
    RETRY = "retry"
    REPAIR = "repair"
    BUDGET = "budget"
    QUARANTINE = "quarantine"


UNEXPECTED_BUDGET = 3  # attempts of a step that raised something unexpected, before quarantine
UNEXPECTED = "unexpected"
SUPERSEDED = "superseded"
STOPPING = "stopping"
CRASH_LOOP = "crash-loop"
CRASH_LOOP_BOOTS = 3  # boots that found the same step of a digest begun and never ended


@dataclass(frozen=True)
class Reason:
    code: str
    next: Next
    summary: str


def _table(*rows: tuple[str, Next, str]) -> dict[str, Reason]:
    return {code: Reason(code, nxt, summary) for code, nxt, summary in rows}


R, P, B, Q = Next.RETRY, Next.REPAIR, Next.BUDGET, Next.QUARANTINE

REASONS: dict[str, Reason] = _table(
    # the network, the registry, the disk: the version is not at fault
    ("fetch-failed", R, "the download failed or stalled"),
    ("fetch-io-error", R, "reading or writing the download failed"),
    ("source-missing", R, "the registry has no such file (yet)"),
    ("source-unreadable", R, "the source could not be read"),
    ("redirect-refused", R, "the registry redirected to a place not allowed"),
    ("auth-failed", R, "the registry refused the credentials in credentials.yaml"),
    (
        "credentials-unusable",
        R,
        "a CA bundle or client certificate in credentials.yaml is unusable",
    ),
    ("disk-full", R, "no space left for the download or the build"),
    ("backend-unavailable", R, "the backend could not be started on this device"),
    ("cuda-error", R, "a CUDA call failed"),
    ("no-candidate", R, "the candidate this step needs is not loaded (it is warmed again)"),
    ("transient", R, "a temporary failure"),
    (SUPERSEDED, R, "desired state or an operator moved on while the step was waiting"),
    (STOPPING, R, "the daemon was stopping: the step was cut short, and is run again at start"),
    # damage to local state: repaired, never held against the version
    ("blob-missing", P, "the stored model is gone from the store; it is fetched again"),
    ("store-damaged", P, "the stored model no longer matches its sha256; it is fetched again"),
    ("artifact-damaged", P, "a build artifact no longer matches its sha256; it is rebuilt"),
    ("engine-mismatch", P, "a cached engine was built for another device or TensorRT; rebuilt"),
    # the version itself: terminal for that desired digest
    ("sha256-mismatch", Q, "the registry's bytes do not match the pinned sha256"),
    ("size-exceeded", Q, "the download is larger than the manifest or policy allows"),
    ("model-too-large", Q, "the model is larger than the trust policy allows"),
    ("unsigned", Q, "no signature, and the trust policy requires one"),
    ("bad-signature", Q, "the signature does not verify"),
    ("untrusted-key", Q, "signed by a key the device does not trust"),
    ("manifest-mismatch", Q, "the signed manifest names other bytes, name or version"),
    ("manifest-invalid", Q, "the signed manifest cannot be read"),
    ("expired", Q, "the signed manifest has expired"),
    ("downgrade", Q, "below the trust policy's min_version"),
    ("version-unparsable", Q, "the version cannot be ordered under the policy's version_scheme"),
    ("unsupported-signature", Q, "a signature kind or hashing this device does not verify"),
    ("onnx-invalid", Q, "the ONNX checker refused the model"),
    ("onnx-external-data", Q, "the model refers to external data"),
    ("external-data-escape", Q, "a tensor location points outside the package"),
    ("custom-op-domain", Q, "an operator domain the policy does not allow"),
    ("opset-unsupported", Q, "an opset version this device cannot run"),
    ("contract-break", Q, "the model breaks the interface contract"),
    ("bad-shape", Q, "the shape ranges do not fit the model"),
    ("precision-unsupported", Q, "the precision cannot be built on this backend"),
    ("build-failed", Q, "the backend could not build the model"),
    ("build-crashed", Q, "the build process crashed"),
    ("build-timeout", Q, "the build did not finish in time"),
    ("load-failed", Q, "the backend could not load the built model"),
    ("infer-failed", Q, "inference failed"),
    ("memory-budget", Q, "the model does not fit in the memory budget even alone"),
    ("rollout-no-room", Q, "a canary or shadow needs both versions loaded, and they do not fit"),
    ("rollout-unjudged", Q, "a swap was asked for before every rollout stage was judged"),
    ("rollout-gate", Q, "a rollout stage failed its gates"),
    ("health-nan", Q, "the health check saw NaN or Inf"),
    ("health-golden-mismatch", Q, "outputs differ from the golden outputs beyond atol"),
    ("health-latency", Q, "slower than the health check's max_latency_ms"),
    ("health-infer-failed", Q, "inference failed during the health check"),
    # a new model's first run, contained in a child process (runtime.backends.probe)
    ("probe-timeout", Q, "the first inference did not finish within the probe's time limit"),
    ("probe-memory", Q, "the first inference needed more memory than the probe's limit"),
    ("probe-crashed", Q, "the process running the first inference died (a crash, an OOM kill)"),
    ("probe-failed", Q, "the first inference failed in the probe"),
    ("warmup-timeout", Q, "warm-up or the health check did not end within the probe's time limit"),
    (CRASH_LOOP, Q, "the daemon died in the same step of this version at several boots in a row"),
    ("golden-missing", Q, "the golden file named by desired state is missing"),
    ("golden-invalid", Q, "the golden file cannot be read"),
    ("source-invalid", Q, "desired state's source cannot be used"),
    ("source-unsupported", Q, "a source scheme hotswap does not fetch"),
    ("http-not-allowed", Q, "a plain http:// source without the trust policy's opt-in"),
    ("invalid-input", Q, "invalid input"),
    ("integrity", Q, "an integrity check failed"),
    ("runtime-failure", Q, "the candidate failed"),
    (UNEXPECTED, B, "an unexpected error (a bug): retried a few times, then quarantined"),
)


def reason(code: str, default: Next = Next.QUARANTINE) -> Reason:
    """The table's entry for `code`; an unlisted code takes `default` (its exception class's)."""
    return REASONS.get(code) or Reason(code, default, code)
