"""A model's slot: the active instance that serves, a candidate being proven, a warm standby.

The swap is one reference assignment under a lock held only for that assignment; a request
takes a reference to the active instance when it starts (`acquire`) and finishes on that same
instance even if a swap happens meanwhile. An instance retired while requests still hold it is
released by whichever request drops the last reference, so nothing waits on a drain and nothing
is freed under a running request.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from runtime.backends.base import Session
from runtime.serving.batcher import Batcher, BatchPolicy, batchable
from runtime.serving.conditions import Conditions
from runtime.serving.traffic import Split


@dataclass(eq=False)
class Instance:
    """One loaded version. `meta` is the control plane's description (sha256, build key, ...);
    with `batching` in it, and a model that batches, the instance gets its own `batcher`."""

    model: str
    version: str
    session: Session
    meta: dict[str, Any] = field(default_factory=dict)
    healthy: bool = False
    _refs: int = 0
    _retired: bool = False
    _released: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    batcher: Batcher | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        policy = BatchPolicy.from_meta(self.meta)
        if policy is not None and batchable(self.session):
            self.batcher = Batcher(self.session, policy)

    def _release(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        self.session.release()

    @property
    def in_flight(self) -> int:
        return self._refs

    def _enter(self) -> None:
        with self._lock:
            self._refs += 1

    def _exit(self) -> None:
        with self._lock:
            self._refs -= 1
            release = self._retired and self._refs == 0 and not self._released
            if release:
                self._released = True
        if release:
            self._release()

    def retire(self) -> None:
        """Release now if idle, else when the last in-flight request finishes."""
        with self._lock:
            self._retired = True
            release = self._refs == 0 and not self._released
            if release:
                self._released = True
        if release:
            self._release()

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "healthy": self.healthy,
            "in_flight": self._refs,
            **self.meta,
        }


class NotReady(Exception):
    """The model exists but has no active instance (first load still in progress, or failed)."""


class ModelSlot:
    """Active, candidate and standby instances of one model, and the traffic split between
    active and candidate while a rollout stage runs (`split`; None: all traffic to active)."""

    def __init__(self, name: str, on_revert_served: Callable[[float], None] | None = None) -> None:
        self.name = name
        self._lock = threading.Lock()
        self.active: Instance | None = None
        self.candidate: Instance | None = None
        self.standby: Instance | None = None
        self.split: Split | None = None
        # Revert timing: when traffic was sent back to a previous version, and who to tell how
        # long it took until a request was actually routed there.
        self._revert_decided: float | None = None
        self.on_revert_served = on_revert_served

    @contextlib.contextmanager
    def acquire(self, request_id: str | None = None) -> Iterator[Instance]:
        """The instance this request runs on: the active one, or the candidate for the share
        of requests a canary stage sends there."""
        reverted: float | None = None
        with self._lock:
            inst = self.active
            if inst is None:
                raise NotReady(self.name)
            split = self.split
            if (
                split is not None
                and split.mode == "canary"
                and not split.tripped  # out of error budget: all stays on the active version
                and self.candidate is not None
                and split.chooses(request_id)
            ):
                inst = self.candidate
            elif self._revert_decided is not None:
                reverted, self._revert_decided = self._revert_decided, None
            inst._enter()
        if reverted is not None and self.on_revert_served is not None:
            self.on_revert_served(time.perf_counter() - reverted)
        try:
            yield inst
        finally:
            inst._exit()

    # -- rollout traffic -------------------------------------------------------------------
    def start_split(self, split: Split) -> None:
        """Begin a rollout stage (a new split replaces the last one, counters and all)."""
        with self._lock:
            if self.candidate is None:
                raise RuntimeError(f"{self.name}: no candidate to send traffic to")
            self.split = split

    def end_split(self, decided_at: float | None = None) -> Split | None:
        """All traffic back to the active version at once. `decided_at` (perf_counter) starts
        the revert clock, stopped by the next request routed to the active version."""
        with self._lock:
            old, self.split = self.split, None
            # a split that tripped started the revert clock at the failing request already
            if old is not None and decided_at is not None and not old.tripped:
                self._revert_decided = decided_at
        return old

    def record(self, inst: Instance, ok: bool, seconds: float) -> None:
        """Count a request's outcome for the rollout stage in progress, if any."""
        split = self.split
        if split is None:
            return
        if inst is self.candidate:
            if split.record(True, ok, seconds) and split.mode == "canary":
                # The split stops routing to the candidate from this request on: time the
                # revert from here (the control plane journals it a moment later).
                with self._lock:
                    if self.split is split:
                        self._revert_decided = split.tripped_at
        elif inst is self.active:
            split.record(False, ok, seconds)

    def mirror_lease(
        self, served_by: Instance, request_id: str | None
    ) -> tuple[Instance, Split] | None:
        """The other version this request should also run on, referenced so it stays loaded
        until the mirror is done (the caller must `release_mirror` it): the candidate for the
        share of requests a shadow stage mirrors, or the active version for every request a
        comparing canary sent to the candidate."""
        with self._lock:
            split, cand, active = self.split, self.candidate, self.active
            if split is None or split.tripped or cand is None or active is None:
                return None
            if split.mode == "shadow" and served_by is active and split.chooses(request_id):
                other = cand
            elif split.mode == "canary" and split.compare and served_by is cand:
                other = active
            else:
                return None
            other._enter()
        return other, split

    @staticmethod
    def release_mirror(inst: Instance) -> None:
        inst._exit()

    def set_candidate(self, inst: Instance) -> None:
        with self._lock:
            old, self.candidate = self.candidate, inst
        if old is not None:
            old.retire()

    def drop_candidate(self) -> Instance | None:
        with self._lock:
            old, self.candidate = self.candidate, None
            self.split = None
        if old is not None:
            old.retire()
        return old

    def promote_candidate(self, keep_standby: bool) -> Instance:
        """The swap: the candidate becomes active in one assignment; the old active becomes standby."""
        with self._lock:
            new = self.candidate
            if new is None:
                raise RuntimeError(f"{self.name}: no candidate to promote")
            old_active, old_standby = self.active, self.standby
            self.active, self.candidate, self.split = new, None, None
            self.standby = old_active if keep_standby else None
        if old_standby is not None:
            old_standby.retire()
        if old_active is not None and not keep_standby:
            old_active.retire()
        return new

    def promote_standby(self, keep_standby: bool, decided_at: float | None = None) -> Instance:
        """Swap back to the warm standby in one assignment; the old active becomes standby.
        `decided_at` (perf_counter) starts the revert clock, as for `end_split`."""
        with self._lock:
            new = self.standby
            if new is None:
                raise RuntimeError(f"{self.name}: no standby to promote")
            old_active = self.active
            self.active = new
            if decided_at is not None:
                self._revert_decided = decided_at
            self.standby = old_active if keep_standby else None
        if old_active is not None and not keep_standby:
            old_active.retire()
        return new

    def activate(self, inst: Instance) -> None:
        """Install an instance directly as active (restore at startup)."""
        with self._lock:
            old, self.active = self.active, inst
        if old is not None:
            old.retire()

    def deactivate(self) -> Instance | None:
        """Stop serving (a sequential swap): new requests get 503 until a version is promoted;
        those in flight finish on the instance, which is then released."""
        with self._lock:
            old, self.active = self.active, None
        if old is not None:
            old.retire()
        return old

    def drop_standby(self) -> None:
        with self._lock:
            old, self.standby = self.standby, None
        if old is not None:
            old.retire()

    def clear(self) -> None:
        with self._lock:
            instances = [self.active, self.candidate, self.standby]
            self.active = self.candidate = self.standby = None
            self.split = None
        for inst in instances:
            if inst is not None:
                inst.retire()

    def describe(self) -> dict[str, Any]:
        with self._lock:
            parts = {"active": self.active, "candidate": self.candidate, "standby": self.standby}
            split = self.split
        out: dict[str, Any] = {k: (v.describe() if v else None) for k, v in parts.items()}
        if split is not None:
            out["rollout"] = split.snapshot()
        return out


class Repository:
    """All slots by model name: what the server serves and the reconciler changes.

    The control plane also `declare`s the names it means to serve (desired state, and at start
    the versions it restores), so the server can tell a model that is known but not loaded
    now (503, try again later) from a name nobody declared (404)."""

    def __init__(self, on_revert_served: Callable[[str, float], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, ModelSlot] = {}
        self._declared: frozenset[str] = frozenset()
        self.on_revert_served = on_revert_served  # (model, seconds), e.g. a metrics histogram
        self.conditions = Conditions()  # desired versions not serving, as the control plane says

    def declare(self, names: Iterable[str]) -> None:
        """The models the control plane serves or means to serve (replaces the last set)."""
        self._declared = frozenset(names)

    def known(self, name: str) -> bool:
        """Declared, or loaded: a name the server answers 503 for rather than 404 when it
        has nothing active."""
        return name in self._declared or self.get(name) is not None

    def slot(self, name: str) -> ModelSlot:
        with self._lock:
            slot = self._slots.get(name)
            if slot is None:
                slot = self._slots[name] = ModelSlot(name, self._revert_reporter(name))
            return slot

    def _revert_reporter(self, name: str) -> Callable[[float], None]:
        def report(seconds: float) -> None:
            if self.on_revert_served is not None:
                self.on_revert_served(name, seconds)

        return report

    def get(self, name: str) -> ModelSlot | None:
        with self._lock:
            return self._slots.get(name)

    def remove(self, name: str) -> None:
        with self._lock:
            slot = self._slots.pop(name, None)
        if slot is not None:
            slot.clear()

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._slots)

    def describe(self) -> dict[str, Any]:
        return {name: slot.describe() for name in self.names() if (slot := self.get(name))}
