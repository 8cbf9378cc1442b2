"""Desired state as the planner sees it: frozen, validated values with no I/O.

The loader (`reconciler.source.load`) builds these from YAML after JSON Schema validation, so every
field here is already known to be well-formed; the planner trusts them. Paths are resolved to
absolute strings by the loader, because "relative to this file" only means something there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from reconciler.core.names import Strategy


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # KServe V2 datatype: FP32, FP16, INT64, ...
    shape: tuple[int, ...]  # -1 for a dynamic dimension


@dataclass(frozen=True)
class ShapeRange:
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class HealthSpec:
    warmup_iterations: int = 10
    golden: str | None = None  # absolute path of an npz with inputs and expected outputs
    atol: float = 1e-3
    rtol: float = 0.0
    max_latency_ms: float | None = None


@dataclass(frozen=True)
class RolloutStage:
    """One step of a canary (share of requests the candidate answers) or a shadow (share of
    requests mirrored to it), held for `duration_s` before it is judged."""

    weight: float  # percent, 0-100
    duration_s: float
    duration: str = ""  # as written ("30s"), for messages


@dataclass(frozen=True)
class Gates:
    """What a candidate must hold during each rollout stage; any crossed gate fails it."""

    max_error_rate: float = 0.01  # failed / requests answered (or mirrored) by the candidate
    max_p99_latency_ratio: float | None = None  # candidate p99 / active p99, judged per stage
    min_requests: int = 20  # candidate requests needed before a stage can pass
    max_output_divergence: float | None = None  # largest |candidate - active| on any output
    min_top1_agreement: float | None = None  # share of rows whose argmax matches the active's


# A canary or shadow written without steps gets these: small first, judged, then most traffic.
DEFAULT_STAGES = {
    "canary": (RolloutStage(10, 30.0, "30s"), RolloutStage(50, 30.0, "30s")),
    "shadow": (RolloutStage(100, 60.0, "60s"),),
}


@dataclass(frozen=True)
class UpdateWindow:
    """When a served version may be replaced (`rollout.window`): daily, from `start` to `end`
    minutes after local midnight (end before start: across midnight), in `timezone` (None:
    the device's). Says when, never what: not part of the digest."""

    start: int  # minute of the day, 0-1439
    end: int
    timezone: str | None = None
    text: str = ""  # as written, "02:00-04:00", for messages

    def contains(self, minute: int) -> bool:
        if self.start <= self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def minutes_until_open(self, minute: int) -> int:
        """0 while open; else the minutes until `start` comes round."""
        return 0 if self.contains(minute) else (self.start - minute) % (24 * 60)


@dataclass(frozen=True)
class RolloutSpec:
    strategy: Strategy = Strategy.IMMEDIATE
    on_failure: str = "revert"
    steps: tuple[RolloutStage, ...] = ()
    gates: Gates = field(default_factory=Gates)
    window: UpdateWindow | None = None  # the swap waits for it (fetch, verify, build do not)

    @property
    def stages(self) -> tuple[RolloutStage, ...]:
        """The stages a candidate goes through before it is promoted (none when immediate)."""
        return () if self.strategy == "immediate" else self.steps


@dataclass(frozen=True)
class RetentionSpec:
    keep_standby: bool = True
    keep_versions: int = 3


@dataclass(frozen=True)
class BatchingSpec:
    """Dynamic batching (`runtime.batching`): concurrent requests of one version stacked along
    the batch dim into one backend call, of at most `max_batch_size` rows, waiting at most
    `max_queue_delay_s` for more; a batch goes at once when it reaches its largest preferred
    size."""

    max_batch_size: int
    max_queue_delay_s: float = 0.002
    max_queue_delay: str = "2ms"  # as written, for messages
    preferred_sizes: tuple[int, ...] = ()

    def to_meta(self) -> dict[str, Any]:
        """What the data plane's batcher and model configuration read (instance meta)."""
        return {
            "max_batch_size": self.max_batch_size,
            "max_queue_delay_s": self.max_queue_delay_s,
            "preferred_sizes": list(self.preferred_sizes),
        }


BatchingKey = tuple[int, float, tuple[int, ...]]


def batching_key(meta: Mapping[str, Any] | None) -> BatchingKey | None:
    """What the planner compares to tell whether the active instance batches as desired state
    asks (from `BatchingSpec.to_meta`, as the instance's meta or the status snapshot has it)."""
    if not meta:
        return None
    preferred = tuple(int(n) for n in meta.get("preferred_sizes", ()))
    return int(meta["max_batch_size"]), float(meta.get("max_queue_delay_s", 0.002)), preferred


@dataclass(frozen=True)
class ModelSpec:
    """One ModelDeployment: what should be served under `name`."""

    name: str
    version: str
    source: str  # absolute path or URL
    sha256: str
    backend: str = "onnxruntime"
    precision: str = "fp32"
    shapes: tuple[tuple[str, ShapeRange], ...] = ()
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    health: HealthSpec = field(default_factory=HealthSpec)
    rollout: RolloutSpec = field(default_factory=RolloutSpec)
    retention: RetentionSpec = field(default_factory=RetentionSpec)
    manifest: str | None = None
    file: str = ""  # the YAML file it came from, for messages and for holding on errors
    # Added after 0.1.0: off (None) keeps a spec's digest what it was (see `digest_body`).
    batching: BatchingSpec | None = None

    @property
    def digest(self) -> str:
        """sha256 of everything that makes this deployment what it is (not where it was read).

        It keys the quarantine and matches candidates and the standby, and journals keep it:
        see `digest_body` for why adding a field does not change it.
        """
        encoded = json.dumps(digest_body(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(encoded.encode()).hexdigest()

    @property
    def batching_key(self) -> BatchingKey | None:
        """How its instances batch, as the planner compares it with what is loaded."""
        return batching_key(self.batching.to_meta()) if self.batching else None

    def shape_range(self, input_name: str) -> ShapeRange | None:
        return dict(self.shapes).get(input_name)


@dataclass(frozen=True)
class LoadError:
    """A desired-state file that could not be used; its model (when known) is held as it is."""

    file: str
    message: str  # "desired/classifier.yaml:14 spec.runtime.precision: 'fp64' is not one of ..."
    model: str | None = None  # metadata.name when it could still be read
    line: int | None = None
    field: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Desired:
    """A snapshot of the desired directory, read once per pass."""

    models: dict[str, ModelSpec] = field(default_factory=dict)
    errors: tuple[LoadError, ...] = ()
    revision: str | None = None  # git commit of the checkout, when it is one
    readable: bool = True  # False when the directory itself could not be read: unload nothing

    def held_models(self) -> set[str]:
        """Models whose files are invalid: keep them as they are, never unload them."""
        return {e.model for e in self.errors if e.model}

    def errored_files(self) -> set[str]:
        return {e.file for e in self.errors}


# -- the digest ----------------------------------------------------------------------------------
# The fields a deployment's digest always covers: every field ModelSpec had in 0.1.0 but `file`
# (where it was read, not what it is). Journals and quarantines hold digests of this encoding, so
# it never changes: a field added later joins the digest only when it differs from its default
# (a spec that does not use it keeps its digest), and one that never matters goes into
# NOT_DIGESTED.
DIGEST_FIELDS: tuple[str, ...] = (
    "name", "version", "source", "sha256", "backend", "precision", "shapes", "inputs",
    "outputs", "health", "rollout", "retention", "manifest",
)  # fmt: skip
NOT_DIGESTED: tuple[str, ...] = ("file",)

# The same rule one level down: every field the nested types had in 0.1.0.
_NESTED_FIELDS: dict[type, tuple[str, ...]] = {
    TensorSpec: ("name", "datatype", "shape"),
    ShapeRange: ("min", "opt", "max"),
    HealthSpec: ("warmup_iterations", "golden", "atol", "rtol", "max_latency_ms"),
    RolloutStage: ("weight", "duration_s", "duration"),
    Gates: (
        "max_error_rate", "max_p99_latency_ratio", "min_requests", "max_output_divergence",
        "min_top1_agreement",
    ),
    RolloutSpec: ("strategy", "on_failure", "steps", "gates"),
    RetentionSpec: ("keep_standby", "keep_versions"),
}  # fmt: skip
# Nested fields that never join the digest: a window changes when a version is swapped in, not
# which deployment it is (moving a window must not make a served version look out of date).
_NESTED_NOT_DIGESTED: dict[type, tuple[str, ...]] = {RolloutSpec: ("window",)}


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _digest_fields(value: Any, always: tuple[str, ...], skip: tuple[str, ...] = ()) -> Any:
    body = {}
    for f in dataclasses.fields(value):
        item = getattr(value, f.name)
        if f.name in skip or (f.name not in always and item == _default(f)):
            continue
        body[f.name] = _digest_value(item)
    return body


def _digest_value(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        known = next((_NESTED_FIELDS[c] for c in type(value).__mro__ if c in _NESTED_FIELDS), None)
        always = known if known is not None else tuple(f.name for f in dataclasses.fields(value))
        return _digest_fields(value, always, _NESTED_NOT_DIGESTED.get(type(value), ()))
    if isinstance(value, (tuple, list)):
        return [_digest_value(v) for v in value]
    return value


def digest_body(spec: ModelSpec) -> dict[str, Any]:
    """What `ModelSpec.digest` hashes: DIGEST_FIELDS, plus any other field (but NOT_DIGESTED)
    that differs from its default, encoded as 0.1.0 did (`asdict`, tuples as lists)."""
    body: dict[str, Any] = _digest_fields(spec, DIGEST_FIELDS, NOT_DIGESTED)
    return body


# -- JSON -----------------------------------------------------------------------------------------
def spec_to_json(spec: ModelSpec) -> dict[str, Any]:
    """JSON-safe form of every field, for the journal and the status snapshot. A field added
    after 0.1.0 is left out while at its default, as in the digest: 0.1.0 rebuilds a journaled
    spec with ModelSpec(**spec), so a rolled-back release still restores what does not use it."""
    body = json.loads(json.dumps(dataclasses.asdict(spec), default=list))
    known = set(DIGEST_FIELDS) | set(NOT_DIGESTED)
    for f in dataclasses.fields(spec):
        if f.name not in known and getattr(spec, f.name) == _default(f):
            del body[f.name]
    return body


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `data` that name a field of `cls`: unknown keys (a field a later release
    added, or one an earlier release had) are ignored, missing ones take their defaults."""
    if not isinstance(data, Mapping):
        raise TypeError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _tensor(data: Mapping[str, Any]) -> TensorSpec:
    known = _known(TensorSpec, data)
    return TensorSpec(**{**known, "shape": tuple(known.get("shape", ()))})


def _shape_range(data: Mapping[str, Any]) -> ShapeRange:
    known = _known(ShapeRange, data)
    return ShapeRange(**{k: tuple(v) for k, v in known.items()})


def _rollout_from_json(data: Mapping[str, Any]) -> RolloutSpec:
    known = _known(RolloutSpec, data)
    if "steps" in known:
        known["steps"] = tuple(RolloutStage(**_known(RolloutStage, s)) for s in known["steps"])
    if "gates" in known:
        known["gates"] = Gates(**_known(Gates, known["gates"]))
    if "strategy" in known:
        known["strategy"] = Strategy(known["strategy"])
    if known.get("window") is not None:
        known["window"] = UpdateWindow(**_known(UpdateWindow, known["window"]))
    return RolloutSpec(**known)


_NESTED_FROM_JSON: dict[str, Any] = {
    "shapes": lambda items: tuple((name, _shape_range(r)) for name, r in items),
    "inputs": lambda items: tuple(_tensor(t) for t in items),
    "outputs": lambda items: tuple(_tensor(t) for t in items),
    "health": lambda d: HealthSpec(**_known(HealthSpec, d)),
    "rollout": _rollout_from_json,
    "retention": lambda d: RetentionSpec(**_known(RetentionSpec, d)),
    "batching": lambda d: None if d is None else _batching(d),
}


def _batching(data: Mapping[str, Any]) -> BatchingSpec:
    known = _known(BatchingSpec, data)
    if "preferred_sizes" in known:
        known["preferred_sizes"] = tuple(known["preferred_sizes"])
    return BatchingSpec(**known)


def spec_from_json(data: Mapping[str, Any]) -> ModelSpec:
    """A ModelSpec from `spec_to_json` of this or any earlier or later release.

    Defaults for what the data lacks, unknown keys ignored, at every level: a release that adds
    or drops a field still reads what another wrote. Raises KeyError, TypeError or ValueError
    when what identifies the deployment (name, version, source, sha256) is missing or not text.
    """
    known = _known(ModelSpec, data)
    for name in ("name", "version", "source", "sha256"):
        if not isinstance(known.get(name), str):
            raise ValueError(f"spec.{name}: expected text, got {known.get(name)!r}")
    for name, convert in _NESTED_FROM_JSON.items():
        if name in known:
            known[name] = convert(known[name])
    return ModelSpec(**known)
