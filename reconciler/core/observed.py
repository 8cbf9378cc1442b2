"""Observed state as the planner sees it: what the runtime serves and what the store holds.

Built by `reconciler.observe` from the runtime's report, the store and the build cache, or by the
CLI from the daemon's status snapshot. Frozen and I/O-free so `plan()` stays pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class InstanceInfo:
    """One loaded version of a model."""

    version: str
    sha256: str
    build_key: str
    digest: str  # desired digest it was deployed for
    healthy: bool = (
        False  # health-checked (candidates only; active/standby are healthy by definition)
    )
    source_file: str = ""  # the desired YAML that asked for it
    stages_passed: int = 0  # rollout stages this candidate has passed (canary/shadow)
    # how it batches (`reconciler.core.desired.batching_key`); None: it does not
    batching: tuple[int, float, tuple[int, ...]] | None = None


@dataclass(frozen=True)
class ModelObserved:
    name: str
    active: InstanceInfo | None = None
    candidate: InstanceInfo | None = None
    standby: InstanceInfo | None = None
    failed_digest: str | None = None  # desired digest that failed terminally: not retried
    last_error: str | None = None


@dataclass(frozen=True)
class Observed:
    models: dict[str, ModelObserved] = field(default_factory=dict)
    blobs: frozenset[str] = frozenset()  # sha256 of complete, verified blobs in the store
    artifacts: frozenset[str] = frozenset()  # build keys present in the build cache
    # (backend, cache identity) available here: its version, plus for TensorRT the device
    # facts an engine depends on; the build key includes it
    backend_versions: tuple[tuple[str, str], ...] = ()
    # sha256 of blobs found damaged in the store and set aside, not fetched again yet: a model
    # serving from its build artifact meanwhile gets them fetched again (reconciler.ops.repair)
    damaged: frozenset[str] = frozenset()
    # models whose update window (`rollout.window`) is closed now: their swap waits. Computed
    # from the clock by whoever builds this (the controller, `hotswap plan`), so plan() stays pure
    closed_windows: frozenset[str] = frozenset()

    def model(self, name: str) -> ModelObserved:
        return self.models.get(name) or ModelObserved(name)

    def backend_version(self, backend: str) -> str | None:
        return dict(self.backend_versions).get(backend)
