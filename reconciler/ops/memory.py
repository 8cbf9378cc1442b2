"""Memory: the two versions side by side when both fit, else one after the other.

Warm asks `make_room` before it loads a candidate; load records each instance's `need` in its
meta, and `resident` adds those up across the repository. The budget (`--memory-budget`) and the
backend's own free-memory probe (a GPU's) are both limits, whichever is lower. When a candidate
fits only with the active version unloaded, the swap is *sequential*: this module remembers
when the model stopped serving, so the swap (or the revert that reloads the old version) can
report how long it was unavailable, and the executor knows to revert even with no candidate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from reconciler.core.desired import ModelSpec
from reconciler.core.errors import RuntimeFailure
from runtime.backends import Backend, BackendError
from runtime.serving.slot import ModelSlot, Repository

log = structlog.get_logger("hotswap.memory")


def memory_need(backend: Backend, artifact: Path) -> int:
    """Bytes an instance of `artifact` will hold: the backend's own figure when it has one
    (a TensorRT engine's device memory), else twice the artifact (weights plus arena), a
    deliberately generous estimate for ONNX Runtime on CPU."""
    estimate = getattr(backend, "memory_need", None)
    if estimate is None:
        return 2 * artifact.stat().st_size
    try:
        return int(estimate(artifact))
    except BackendError as e:  # an engine header it cannot read: the backend's own verdict
        raise RuntimeFailure(f"{artifact.parent.name[:12]}: {e}", reason=e.reason) from e


class MemoryPlanner:
    def __init__(
        self,
        repo: Repository,
        budget: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`budget`: bytes all loaded instances may use (None: no limit but the device's own)."""
        self.repo = repo
        self.budget = budget
        self._clock = clock
        self._lock = threading.Lock()
        self._sequential: dict[str, float] = {}  # model -> when its active version was unloaded

    def resident(self) -> int:
        total = 0
        for name in self.repo.names():
            slot = self.repo.get(name)
            for inst in (slot.active, slot.candidate, slot.standby) if slot else ():
                if inst is not None:
                    total += int(inst.meta.get("memory", 0))
        return total

    def free(self, backend: Backend) -> int | None:
        limits = []
        if self.budget is not None:
            limits.append(self.budget - self.resident())
        probe = getattr(backend, "memory_free", None)
        free = probe() if probe else None
        if free is not None:
            limits.append(int(free))
        return min(limits) if limits else None

    def make_room(self, spec: ModelSpec, backend: Backend, artifact: Path) -> bool:
        """Make room for the candidate; True when that meant unloading the active version.

        Order: the standby goes first (it only speeds up a revert); only when the candidate
        still does not fit beside the active version is the active one unloaded — a sequential
        swap, with the model unavailable until the candidate is proven (or the old version is
        reloaded by the revert). A candidate that would not fit even alone is refused with the
        active version untouched.
        """
        need = memory_need(backend, artifact)
        free = self.free(backend)
        slot = self.repo.slot(spec.name)
        if free is None or need <= free:
            return False
        if slot.standby is not None:
            slot.drop_standby()
            free = self.free(backend)
            if free is None or need <= free:
                return False
        self._refuse_if_no_room(spec, slot, need, free)
        self._begin_sequential(spec, slot, need, free)
        return True

    @staticmethod
    def _refuse_if_no_room(spec: ModelSpec, slot: ModelSlot, need: int, free: int) -> None:
        active = slot.active
        reclaimable = int(active.meta.get("memory", 0)) if active else 0
        if active is None or need > free + reclaimable:
            raise RuntimeFailure(
                f"warm {spec.name} v{spec.version}: needs about {need} bytes of memory, and only"
                f" {free + reclaimable} would be free even with the active version unloaded"
                " (raise --memory-budget or free memory)",
                reason="memory-budget",
            )
        if spec.rollout.stages:
            # A canary or shadow compares the two versions on live traffic: unloading the
            # serving one first would leave nothing to compare with, and no service meanwhile.
            raise RuntimeFailure(
                f"warm {spec.name} v{spec.version}: a {spec.rollout.strategy} needs both versions"
                f" loaded (about {need} bytes more), and they do not fit together; use strategy"
                " immediate for a sequential swap, or raise --memory-budget",
                reason="rollout-no-room",
            )

    def _begin_sequential(self, spec: ModelSpec, slot: ModelSlot, need: int, free: int) -> None:
        log.warning(
            "swap.sequential",
            model=spec.name,
            unloading=slot.active.version if slot.active else None,
            candidate=spec.version,
            need=need,
            free=free,
            note="both versions do not fit: the model is unavailable until the candidate is proven",
        )
        with self._lock:
            self._sequential[spec.name] = self._clock()
        slot.deactivate()

    def in_sequential_swap(self, model: str) -> bool:
        with self._lock:
            return model in self._sequential

    def end_sequential(self, model: str) -> float | None:
        """The sequential swap of `model` is over: how long (ms) it was unavailable, if it was."""
        with self._lock:
            started = self._sequential.pop(model, None)
        return None if started is None else round((self._clock() - started) * 1000, 1)
