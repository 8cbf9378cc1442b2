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
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from runtime.backends.base import Session


@dataclass(eq=False)
class Instance:
    """One loaded version. `meta` is the control plane's description (sha256, build key, ...)."""

    model: str
    version: str
    session: Session
    meta: dict[str, Any] = field(default_factory=dict)
    healthy: bool = False
    _refs: int = 0
    _retired: bool = False
    _released: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

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
            self.session.release()

    def retire(self) -> None:
        """Release now if idle, else when the last in-flight request finishes."""
        with self._lock:
            self._retired = True
            release = self._refs == 0 and not self._released
            if release:
                self._released = True
        if release:
            self.session.release()

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
    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self.active: Instance | None = None
        self.candidate: Instance | None = None
        self.standby: Instance | None = None

    @contextlib.contextmanager
    def acquire(self) -> Iterator[Instance]:
        with self._lock:
            inst = self.active
            if inst is None:
                raise NotReady(self.name)
            inst._enter()
        try:
            yield inst
        finally:
            inst._exit()

    def set_candidate(self, inst: Instance) -> None:
        with self._lock:
            old, self.candidate = self.candidate, inst
        if old is not None:
            old.retire()

    def drop_candidate(self) -> Instance | None:
        with self._lock:
            old, self.candidate = self.candidate, None
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
            self.active, self.candidate = new, None
            self.standby = old_active if keep_standby else None
        if old_standby is not None:
            old_standby.retire()
        if old_active is not None and not keep_standby:
            old_active.retire()
        return new

    def promote_standby(self, keep_standby: bool) -> Instance:
        """Swap back to the warm standby in one assignment; the old active becomes standby."""
        with self._lock:
            new = self.standby
            if new is None:
                raise RuntimeError(f"{self.name}: no standby to promote")
            old_active = self.active
            self.active = new
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
        for inst in instances:
            if inst is not None:
                inst.retire()

    def describe(self) -> dict[str, Any]:
        with self._lock:
            parts = {"active": self.active, "candidate": self.candidate, "standby": self.standby}
        return {k: (v.describe() if v else None) for k, v in parts.items()}


class Repository:
    """All slots by model name: what the server serves and the reconciler changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, ModelSlot] = {}

    def slot(self, name: str) -> ModelSlot:
        with self._lock:
            slot = self._slots.get(name)
            if slot is None:
                slot = self._slots[name] = ModelSlot(name)
            return slot

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
