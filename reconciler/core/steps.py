"""Steps: small frozen values that say whether they are done and how to do them.

A plan is a list of these; `str(step)` is the stable one-line form `hotswap plan` prints. Each
step's `done(observed)` means *verified* done (a blob is present only after its sha256 matched;
an artifact only under its full compatibility key), so re-running a plan after a crash skips
finished work and redoes the rest. `apply(ctx)` hands the work to the executor's context, which
holds all the I/O; this module imports none, so plans stay data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from reconciler.core.desired import ModelSpec
from reconciler.core.names import StepName
from reconciler.core.observed import InstanceInfo, Observed
from reconciler.core.outcome import Wait


class RecordBody(Protocol):
    """A typed journal record (`reconciler.state.records`): the executor writes it as it is."""

    def to_detail(self) -> dict[str, Any]: ...


Detail = dict[str, Any] | RecordBody | None  # what a step reports for its `done` record


class StepContext(Protocol):
    """The operations steps may ask for; `reconciler.ops.context.Operations` does the I/O."""

    def fetch(self, spec: ModelSpec) -> Detail: ...
    def verify(self, spec: ModelSpec) -> Detail: ...
    def build(self, spec: ModelSpec, key: str) -> Detail: ...
    def warm(self, spec: ModelSpec, key: str) -> Detail: ...
    def health_check(self, spec: ModelSpec) -> Detail: ...
    def rollout(self, spec: ModelSpec, stage: int) -> Detail | Wait: ...
    def swap(self, spec: ModelSpec) -> Detail: ...
    def retire(self, model: str, keep_standby: bool, keep_versions: int) -> Detail: ...
    def revert(self, model: str, reason: str) -> Detail: ...
    def unload(self, model: str) -> Detail: ...
    def restore(self, spec: ModelSpec) -> Detail: ...


class Step(Protocol):
    name: ClassVar[StepName]
    model: str

    def done(self, observed: Observed) -> bool: ...
    def apply(self, ctx: StepContext) -> Detail | Wait: ...


def _candidate_for(
    observed: Observed, model: str, spec: ModelSpec, key: str
) -> InstanceInfo | None:
    """The loaded candidate if it is exactly this deployment (same bytes, build and settings)."""
    cand = observed.model(model).candidate
    if cand is None or cand.build_key != key or cand.digest != spec.digest:
        return None
    return cand


@dataclass(frozen=True)
class Fetch:
    name: ClassVar[StepName] = StepName.FETCH
    model: str
    spec: ModelSpec

    def done(self, observed: Observed) -> bool:
        return self.spec.sha256 in observed.blobs

    def apply(self, ctx: StepContext) -> Detail:
        return ctx.fetch(self.spec)

    def __str__(self) -> str:
        return f"fetch {self.model} v{self.spec.version} from {self.spec.source} (sha256 {self.spec.sha256[:12]})"


@dataclass(frozen=True)
class Verify:
    """sha256, ONNX checker and interface contract; produces the only input build/warm accept."""

    name: ClassVar[StepName] = StepName.VERIFY
    model: str
    spec: ModelSpec

    def done(self, observed: Observed) -> bool:
        return False  # verification is an in-memory proof: redone whenever it is needed

    def apply(self, ctx: StepContext) -> Detail:
        return ctx.verify(self.spec)

    def __str__(self) -> str:
        return f"verify {self.model} v{self.spec.version} (sha256, onnx checker, interface)"


@dataclass(frozen=True)
class Build:
    name: ClassVar[StepName] = StepName.BUILD
    model: str
    spec: ModelSpec
    build_key: str

    def done(self, observed: Observed) -> bool:
        return self.build_key in observed.artifacts

    def apply(self, ctx: StepContext) -> Detail:
        return ctx.build(self.spec, self.build_key)

    def __str__(self) -> str:
        s = self.spec
        return (
            f"build {self.model} v{s.version} {s.backend}/{s.precision} (key {self.build_key[:12]})"
        )


@dataclass(frozen=True)
class Warm:
    name: ClassVar[StepName] = StepName.WARM
    model: str
    spec: ModelSpec
    build_key: str

    def done(self, observed: Observed) -> bool:
        return _candidate_for(observed, self.model, self.spec, self.build_key) is not None

    def apply(self, ctx: StepContext) -> Detail:
        return ctx.warm(self.spec, self.build_key)

    def __str__(self) -> str:
        return (
            f"warm {self.model} v{self.spec.version} beside the active version"
            f" ({self.spec.health.warmup_iterations} warm-up iterations)"
        )


@dataclass(frozen=True)
class HealthCheck:
    name: ClassVar[StepName] = StepName.HEALTH_CHECK
    model: str
    spec: ModelSpec
    build_key: str

    def done(self, observed: Observed) -> bool:
        cand = _candidate_for(observed, self.model, self.spec, self.build_key)
        return cand is not None and cand.healthy

    def apply(self, ctx: StepContext) -> Detail:
        return ctx.health_check(self.spec)

    def __str__(self) -> str:
        h = self.spec.health
        checks = ["no NaN/Inf"]
        if h.golden:
            checks.append(f"golden within atol {h.atol:g}")
        if h.max_latency_ms is not None:
            checks.append(f"latency <= {h.max_latency_ms:g} ms")
        return f"health-check {self.model} v{self.spec.version} ({', '.join(checks)})"


def _percent(x: float) -> str:
    return f"{x * 100:.4g}%"


def _gates(spec: ModelSpec) -> str:
    g = spec.rollout.gates
    parts = [f"errors <= {_percent(g.max_error_rate)}"]
    if g.max_p99_latency_ratio is not None:
        parts.append(f"p99 <= {g.max_p99_latency_ratio:g}x active")
    if g.max_output_divergence is not None:
        parts.append(f"outputs within {g.max_output_divergence:g}")
    if g.min_top1_agreement is not None:
        parts.append(f"top-1 agreement >= {_percent(g.min_top1_agreement)}")
    parts.append(f">= {g.min_requests} requests")
    return ", ".join(parts)


@dataclass(frozen=True)
class Rollout:
    """One stage of a canary or shadow rollout: shift (or mirror) a share of the traffic to the
    proven candidate, and hold it there until the stage's gates pass or fail."""

    name: ClassVar[StepName] = StepName.ROLLOUT
    model: str
    spec: ModelSpec
    build_key: str
    stage: int  # index into spec.rollout.stages

    def done(self, observed: Observed) -> bool:
        cand = _candidate_for(observed, self.model, self.spec, self.build_key)
        return cand is not None and cand.stages_passed > self.stage

    def apply(self, ctx: StepContext) -> Detail | Wait:
        return ctx.rollout(self.spec, self.stage)

    def __str__(self) -> str:
        r = self.spec.rollout
        s = r.stages[self.stage]
        where = f"{self.model} v{self.spec.version} stage {self.stage + 1}/{len(r.stages)}"
        if r.strategy == "shadow":
            what = f"mirror {s.weight:g}% of requests for {s.duration}, answers from the active version"
        else:
            what = f"{s.weight:g}% of requests for {s.duration}"
        return f"{r.strategy} {where}: {what} (gates: {_gates(self.spec)})"


@dataclass(frozen=True)
class Swap:
    name: ClassVar[StepName] = StepName.SWAP
    model: str
    spec: ModelSpec
    build_key: str
    rollout_skipped: str | None = None  # why the rollout stages were not run (nothing serving)

    def done(self, observed: Observed) -> bool:
        # The version too: the same bytes re-released as a new version build to the same key,
        # and are not swapped in until the new version is what answers.
        active = observed.model(self.model).active
        return (
            active is not None
            and active.build_key == self.build_key
            and active.version == self.spec.version
            and active.batching == self.spec.batching_key
        )

    def apply(self, ctx: StepContext) -> Detail:
        return ctx.swap(self.spec)

    def __str__(self) -> str:
        strategy = self.spec.rollout.strategy
        if self.rollout_skipped:
            return (
                f"swap {self.model} to v{self.spec.version} ({strategy} skipped: nothing serving)"
            )
        return f"swap {self.model} to v{self.spec.version} ({strategy})"


@dataclass(frozen=True)
class Retire:
    """Free what the new version replaced, per retention: the standby instance and old blobs."""

    name: ClassVar[StepName] = StepName.RETIRE
    model: str
    keep_standby: bool
    keep_versions: int

    def done(self, observed: Observed) -> bool:
        return False  # recomputes what to free from the journal each time: cheap and idempotent

    def apply(self, ctx: StepContext) -> Detail:
        return ctx.retire(self.model, self.keep_standby, self.keep_versions)

    def __str__(self) -> str:
        standby = "keep standby" if self.keep_standby else "release standby"
        return f"retire {self.model} old versions ({standby}, keep {self.keep_versions} in store)"


@dataclass(frozen=True)
class Revert:
    """Drop a candidate that is no longer wanted; the active version never stops serving."""

    name: ClassVar[StepName] = StepName.REVERT
    model: str
    candidate_version: str
    why: str = "candidate no longer desired"  # or the failure that made the executor revert

    def done(self, observed: Observed) -> bool:
        cand = observed.model(self.model).candidate
        return cand is None or cand.version != self.candidate_version

    def apply(self, ctx: StepContext) -> Detail:
        return ctx.revert(self.model, self.why)

    def __str__(self) -> str:
        return f"revert {self.model}: drop candidate v{self.candidate_version}, keep serving the active version"


@dataclass(frozen=True)
class Unload:
    name: ClassVar[StepName] = StepName.UNLOAD
    model: str
    version: str

    def done(self, observed: Observed) -> bool:
        m = observed.model(self.model)
        return m.active is None and m.candidate is None and m.standby is None

    def apply(self, ctx: StepContext) -> Detail:
        return ctx.unload(self.model)

    def __str__(self) -> str:
        return f"unload {self.model} v{self.version} (its desired file is gone)"


@dataclass(frozen=True)
class Restore:
    """At startup, before anything else: serve the last promoted version again (verify, build
    if the cache lost it, load, activate). No warm-up or health check: it was proven when it
    was promoted, and the device should serve again as soon as it can."""

    name: ClassVar[StepName] = StepName.RESTORE
    model: str
    spec: ModelSpec
    from_seq: int  # the journal's swap record being restored

    def done(self, observed: Observed) -> bool:
        active = observed.model(self.model).active
        return active is not None and active.digest == self.spec.digest

    def apply(self, ctx: StepContext) -> Detail:
        return ctx.restore(self.spec)

    def __str__(self) -> str:
        return (
            f"restore {self.model} v{self.spec.version} (promoted at journal seq {self.from_seq})"
        )


AnyStep = (
    Fetch
    | Verify
    | Build
    | Warm
    | HealthCheck
    | Rollout
    | Swap
    | Retire
    | Revert
    | Unload
    | Restore
)
