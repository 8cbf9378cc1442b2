"""Observed state as the planner sees it: the runtime's slots, the store, the build cache.

The controller observes once per pass to plan, the executor before each step (to skip what is
done) and the status writer after every change. Quarantine is the loop's state, not this
layer's: it comes in as plain data (model -> quarantined digest, model -> last error). How far a
candidate got in its rollout comes from `RolloutProgress`, as `InstanceInfo.stages_passed`, and
is added to the status snapshot's view of the candidate (`describe`) for `hotswap plan`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from reconciler.core.desired import batching_key
from reconciler.core.observed import InstanceInfo, ModelObserved, Observed
from reconciler.ops.artifacts import ArtifactCache
from reconciler.ops.backends import Backends
from reconciler.ops.repair import StoreRepair
from reconciler.ops.rollout import RolloutProgress
from reconciler.state.store import Store
from runtime.serving.slot import Instance, Repository

NOTHING: Mapping[str, str] = MappingProxyType({})


def _info(
    inst: Instance | None, healthy_default: bool = True, stages: int = 0
) -> InstanceInfo | None:
    if inst is None:
        return None
    m = inst.meta
    return InstanceInfo(
        version=inst.version,
        sha256=m.get("sha256", ""),
        build_key=m.get("build_key", ""),
        digest=m.get("digest", ""),
        healthy=inst.healthy or healthy_default,
        source_file=m.get("source_file", ""),
        stages_passed=stages,
        batching=batching_key(m.get("batching")),
    )


class Observer:
    def __init__(
        self,
        repo: Repository,
        store: Store,
        artifacts: ArtifactCache,
        backends: Backends,
        progress: RolloutProgress,
        repair: StoreRepair | None = None,
    ) -> None:
        self.repo = repo
        self.repair = repair
        self.store = store
        self.artifacts = artifacts
        self.backends = backends
        self.progress = progress

    def observe(
        self, quarantined: Mapping[str, str] = NOTHING, last_errors: Mapping[str, str] = NOTHING
    ) -> Observed:
        """`quarantined`: model -> the desired digest that failed terminally (not retried)."""
        models: dict[str, ModelObserved] = {}
        for name in set(self.repo.names()) | set(quarantined):
            slot = self.repo.get(name)
            models[name] = ModelObserved(
                name=name,
                active=_info(slot.active) if slot else None,
                candidate=self._candidate(name, slot.candidate) if slot else None,
                standby=_info(slot.standby) if slot else None,
                failed_digest=quarantined.get(name),
                last_error=last_errors.get(name),
            )
        blobs = self.store.blobs()
        damaged = self.repair.pending_blobs() - blobs if self.repair else frozenset()
        return Observed(
            models=models,
            blobs=blobs,
            artifacts=self.artifacts.keys(),
            backend_versions=self.backends.identities,
            damaged=damaged,
        )

    def _candidate(self, model: str, cand: Instance | None) -> InstanceInfo | None:
        if cand is None:
            return None
        stages = self.progress.passed(model, cand.meta.get("digest", ""))
        return _info(cand, healthy_default=False, stages=stages)

    def describe(self) -> dict[str, Any]:
        """The repository's own view (for the status snapshot), with the candidate's progress."""
        view = self.repo.describe()
        for model, parts in view.items():
            cand = parts.get("candidate")
            if cand is not None:
                cand["stages_passed"] = self.progress.passed(model, cand.get("digest", ""))
        return view
