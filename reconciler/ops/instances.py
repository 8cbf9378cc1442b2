"""Loaded versions: load, warm, health-check, swap, revert, restore, unload.

The warm, health-check, swap, revert and unload steps come here (through `Operations`), and so
does startup restore. Every instance is loaded from a verified, built artifact (`Preparer`),
after memory planning made room (`MemoryPlanner`), and carries in its meta what the control
plane needs to recognise it again (sha256, build key, desired digest, who authorised it, its
memory). A new model's first run happens in a child process before it is loaded here, and its
runs here are bounded in time (`Prober`, reconciler.ops.probe). What a candidate passed of its
rollout lives in `RolloutProgress`, cleared here whenever the candidate changes. The revert of a sequential swap reads the journal for the last
promoted version (kept here, in one place, until the journal has a typed query module).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import structlog

from reconciler.core.desired import ModelSpec
from reconciler.core.errors import HotswapError, RuntimeFailure
from reconciler.core.plan import rollout_skip_reason
from reconciler.core.steps import Detail
from reconciler.ops.authorization import Authorizer
from reconciler.ops.backends import Backends
from reconciler.ops.background import Background, heavy
from reconciler.ops.memory import MemoryPlanner, memory_need
from reconciler.ops.prepare import Preparer
from reconciler.ops.probe import Prober
from reconciler.ops.rollout import RolloutProgress
from reconciler.state import queries
from reconciler.state.crashpoint import crashpoint
from reconciler.state.journal import Journal
from reconciler.state.records import RestoreDone, SwapDone, WarmDone
from reconciler.verify.health import health_check, warm_up
from runtime.backends import BackendError
from runtime.serving.slot import Instance, ModelSlot, Repository

log = structlog.get_logger("hotswap.instances")


def _matches(inst: Instance, spec: ModelSpec, key: str) -> bool:
    return inst.meta.get("build_key") == key and inst.meta.get("digest") == spec.digest


class Instances:
    def __init__(
        self,
        repo: Repository,
        journal: Journal,
        prepare: Preparer,
        authorizer: Authorizer,
        backends: Backends,
        memory: MemoryPlanner,
        progress: RolloutProgress,
        background: Background,
        threads: int | None = None,
        prober: Prober | None = None,
    ) -> None:
        self.repo = repo
        self.journal = journal
        self.prepare = prepare
        self.authorizer = authorizer
        self.backends = backends
        self.memory = memory
        self.progress = progress
        self.background = background
        self.threads = threads  # inference threads per session (None: the backend's default)
        self.prober = prober or Prober(journal)

    def load(self, spec: ModelSpec, key: str, artifact: Path | None = None) -> Instance:
        """Load `artifact` (by default the verified, built one) as an instance of `spec`."""
        artifact = artifact or self.prepare.artifact(spec, key)
        backend = self.backends.get(spec.backend)
        need = memory_need(backend, artifact)
        try:
            session = backend.load(artifact, threads=self.threads)
        except BackendError as e:
            # Backends translate their library's errors; anything else is a bug in the backend
            # and goes up as unexpected (retried a few times), not as a verdict on the model.
            if e.reason == "engine-mismatch":
                # built for another device or TensorRT: discard it, the repair builds anew
                self.prepare.artifacts.remove(key)
            raise RuntimeFailure(
                f"load {spec.name} v{spec.version}: {e}", reason=e.reason or "load-failed"
            ) from e
        meta = {
            "sha256": spec.sha256,
            "build_key": key,
            "digest": spec.digest,
            "source_file": spec.file,
            "backend": spec.backend,
            "precision": spec.precision,
            "platform": {"tensorrt": "tensorrt_plan"}.get(spec.backend, f"{spec.backend}_onnx"),
            "authorization": self.authorizer.authorize(spec).to_json(),  # cached by verify
            "interface": [t.name for t in session.inputs + session.outputs],
            "memory": need,
            # the data plane bounds request bodies by the largest input the deployment allows
            "input_max": {name: list(r.max) for name, r in spec.shapes},
        }
        bounds = [r.max[0] for _, r in spec.shapes if r.max]
        if bounds:  # the batch bound Triton's model configuration reports
            meta["max_batch_size"] = min(bounds)
        if spec.batching is not None:  # the instance batches its requests (runtime.serving.batcher)
            meta["batching"] = spec.batching.to_meta()
        return Instance(spec.name, spec.version, session, meta)

    @heavy
    def warm(self, spec: ModelSpec, key: str) -> Detail:
        artifact = self.prepare.artifact(spec, key)
        backend = self.backends.get(spec.backend)
        # First in a child, under limits, before anything is unloaded to make room for it.
        inputs = self.prepare.verified(spec).inputs
        probe = self.prober.probe(spec, key, artifact, inputs, self.threads)
        sequential = self.memory.make_room(spec, backend, artifact)
        inst = self.load(spec, key, artifact)
        steps = self.prepare.steps
        try:
            crashpoint("warm:inference")
            with (
                steps.step(spec.name, "warm", unit="runs"),
                self.prober.bounded(spec, inst.session, "warm-up"),
            ):
                warm_up(
                    spec, inst.session, lambda done, total: steps.report(spec.name, done, total)
                )
        except BaseException:
            inst.retire()
            raise
        self.progress.clear(spec.name)  # a new candidate has passed nothing yet
        self.repo.slot(spec.name).set_candidate(inst)
        return WarmDone(spec.health.warmup_iterations, inst.meta["memory"], sequential, key, probe)

    @heavy
    def health_check(self, spec: ModelSpec) -> Detail:
        cand = self.repo.slot(spec.name).candidate
        if cand is None or cand.meta.get("digest") != spec.digest:
            raise RuntimeFailure(
                f"health-check {spec.name} v{spec.version}: no candidate loaded",
                reason="no-candidate",
            )
        with self.prober.bounded(spec, cand.session, "health-check"):
            report = health_check(spec, cand.session)
        cand.healthy = True
        return report.to_json()

    def swap(self, spec: ModelSpec) -> Detail:
        slot = self.repo.slot(spec.name)
        old = slot.active.version if slot.active else None
        standby = slot.standby
        back = (
            slot.candidate is None
            and standby is not None
            and _matches(standby, spec, self.backends.key_for(spec))
        )
        skipped = None if back else self._rollout_skipped(spec, slot)
        new = (
            self._promote_standby(spec, slot)
            if back
            else self._promote_candidate(spec, slot, judge=skipped is None)
        )
        crashpoint("swap:flipped")
        self.progress.clear(spec.name)
        unavailable = self.memory.end_sequential(spec.name)
        return SwapDone(
            promoted=new.version,
            previous=old,
            build_key=new.meta["build_key"],
            spec=spec,
            # who authorised it (key id, manifest digest); the git commit is the record's revision
            authorization=new.meta.get("authorization"),
            sequential=unavailable is not None,
            unavailable_ms=unavailable,
            rollout_skipped=skipped,
        )

    def _rollout_skipped(self, spec: ModelSpec, slot: ModelSlot) -> str | None:
        """Why the candidate goes in without its rollout stages: nothing serves to compare it with
        (a fresh device). A sequential swap unloaded the active version on purpose and is no
        first deploy, though the memory check refuses those for canaries anyway."""
        if self.memory.in_sequential_swap(spec.name):
            return None
        return rollout_skip_reason(spec, serving=slot.active is not None)

    def _promote_standby(self, spec: ModelSpec, slot: ModelSlot) -> Instance:
        # Going back to the version kept warm: one pointer change, no load, no warm-up — but
        # still under today's trust policy (a key revoked or a min_version raised since).
        self.authorizer.authorize(spec)
        return slot.promote_standby(spec.retention.keep_standby, decided_at=time.perf_counter())

    def _promote_candidate(self, spec: ModelSpec, slot: ModelSlot, judge: bool) -> Instance:
        cand = slot.candidate
        judged = self.progress.passed(spec.name, cand.meta.get("digest", "")) if cand else 0
        if judge and judged < len(spec.rollout.stages):
            # The planner never asks for this; the check makes "never promoted unjudged" a
            # property of the swap itself, not of every path that might reach it.
            raise RuntimeFailure(
                f"swap {spec.name} v{spec.version}: the candidate passed {judged} of"
                f" {len(spec.rollout.stages)} {spec.rollout.strategy} stages",
                reason="rollout-unjudged",
            )
        return slot.promote_candidate(spec.retention.keep_standby)

    def revert(self, model: str, reason: str) -> Detail:
        slot = self.repo.get(model)
        dropped = slot.drop_candidate() if slot else None
        self.progress.clear(model)
        detail: dict[str, Any] = {"dropped": dropped.version if dropped else None, "reason": reason}
        if self.memory.in_sequential_swap(model):
            # The active version was unloaded to make room: bring the last promoted one back.
            promoted = queries.last_promoted(self.journal.records()).get(model)
            if promoted is not None and isinstance(promoted.body, SwapDone):
                swap = promoted.body
                auth = swap.authorization
                self.authorizer.seed(swap.spec, dict(auth) if auth is not None else None)
                self.restore(swap.spec)
                detail["resumed"] = swap.spec.version
            detail["unavailable_ms"] = self.memory.end_sequential(model)
        detail["serving"] = slot.active.version if slot and slot.active else None
        return detail

    def unload(self, model: str) -> Detail:
        self.repo.remove(model)
        self.progress.clear(model)
        return {}

    def restore(self, spec: ModelSpec) -> Detail:
        """Serve a previously promoted version again: verify, build if needed, load, activate.

        With its blob gone from the store (found damaged and set aside, or deleted) it serves
        from its intact build artifact at once, then fetches the blob again; a failed fetch
        does not stop it serving (the planner fetches again, reconciler.core.plan)."""
        key = self.backends.key_for(spec)
        artifact = None
        if not self.prepare.store.has(spec.sha256):
            artifact = self.prepare.intact_artifact(spec, key)
            if artifact is None:
                self.prepare.download(spec)
        inst = self.load(spec, key, artifact)
        inst.healthy = True
        self.repo.slot(spec.name).activate(inst)
        if artifact is not None:
            self._fetch_again(spec)
        return RestoreDone(spec.version, key)

    def _fetch_again(self, spec: ModelSpec) -> None:
        try:
            self.prepare.download(spec)
        except HotswapError as e:
            log.warning(
                "restore.refetch-failed", model=spec.name, version=spec.version, error=e.message
            )
