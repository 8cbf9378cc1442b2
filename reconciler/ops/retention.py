"""Retention: what the retire step frees, and what it must never touch.

The retire step comes here after a swap: the standby goes unless retention keeps it, and this
model's blobs and artifacts beyond `keep_versions` promoted versions are removed. What is
considered is only what this model's own history brought in (its fetch, build and swap records
in the journal — read here, in one place, until the journal has a typed query module), so
retiring one model never touches another's files. Kept whatever the history says: anything
loaded anywhere, and anything the current desired state of any model wants (`pin`, called by
the controller on every pass).
"""

from __future__ import annotations

import threading

from reconciler.core.desired import ModelSpec
from reconciler.core.steps import Detail
from reconciler.ops.artifacts import ArtifactCache
from reconciler.ops.backends import Backends
from reconciler.state import queries
from reconciler.state.journal import Journal
from reconciler.state.store import Store
from runtime.serving.slot import Repository


class Retention:
    def __init__(
        self,
        store: Store,
        artifacts: ArtifactCache,
        repo: Repository,
        journal: Journal,
        backends: Backends,
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.repo = repo
        self.journal = journal
        self.backends = backends
        self._lock = threading.Lock()
        self._pinned_blobs: frozenset[str] = frozenset()
        self._pinned_keys: frozenset[str] = frozenset()

    def pin(self, specs: list[ModelSpec]) -> None:
        """What these deployments need is never garbage-collected (until the next `pin`)."""
        blobs = frozenset(s.sha256 for s in specs)
        keys = frozenset(self.backends.key_for(s) for s in specs)
        with self._lock:
            self._pinned_blobs, self._pinned_keys = blobs, keys

    def pinned(self) -> tuple[frozenset[str], frozenset[str]]:
        with self._lock:
            return self._pinned_blobs, self._pinned_keys

    def retire(self, model: str, keep_standby: bool, keep_versions: int) -> Detail:
        slot = self.repo.slot(model)
        if not keep_standby:
            slot.drop_standby()
        old_blobs, old_keys = self.expired(model, keep_versions)
        for sha in old_blobs:
            self.store.path(sha).unlink(missing_ok=True)
        for key in old_keys:
            self.artifacts.remove(key)
        self.store.clean_partials(keep=self.pinned()[0])  # week-old abandoned downloads
        return {"removed_blobs": sorted(old_blobs), "removed_artifacts": sorted(old_keys)}

    def expired(self, model: str, keep_versions: int) -> tuple[set[str], set[str]]:
        """This model's blobs and artifacts beyond retention: (sha256s, build keys)."""
        seen_blobs, seen_keys, promoted = self._history(model)
        pinned_blobs, pinned_keys = self.pinned()
        keep_blobs, keep_keys = self._loaded()
        keep_blobs |= pinned_blobs
        keep_keys |= pinned_keys
        for sha, key in promoted[-keep_versions:]:  # the schema says keep_versions >= 1
            keep_blobs.add(sha)
            keep_keys.add(key)
        return seen_blobs - keep_blobs - {""}, seen_keys - keep_keys - {""}

    def _history(self, model: str) -> tuple[set[str], set[str], list[tuple[str, str]]]:
        """Blobs fetched, keys built, and (sha256, build key) promoted, most recent last."""
        found = queries.history(self.journal.records(model), model)
        return found.blobs, found.build_keys, found.promoted

    def _loaded(self) -> tuple[set[str], set[str]]:
        """sha256s and build keys of every instance loaded anywhere (any model, any role)."""
        blobs: set[str] = set()
        keys: set[str] = set()
        for name in self.repo.names():
            slot = self.repo.get(name)
            for inst in (slot.active, slot.candidate, slot.standby) if slot else ():
                if inst is not None:
                    blobs.add(inst.meta.get("sha256", ""))
                    keys.add(inst.meta.get("build_key", ""))
        return blobs, keys
