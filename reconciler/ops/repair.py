"""The store heals itself: damaged local copies are set aside, journaled, counted and repaired.

The preparer and the build cache find the damage (a stored blob whose sha256 no longer matches
its name, a build artifact whose sha256 no longer matches its `meta.json`); this module is where
they report it, so each finding is one `store-damaged` journal record, one count of
`hotswap_store_damaged_total{model,kind}` and one error log line, and each repair one
`refetched` record. What is damaged and not repaired yet (`pending_blobs`) is replayed from the
journal at start, so a blob set aside before a restart is still fetched again after it: the
planner asks for that fetch for a model that meanwhile serves from its intact build artifact.

A damaged copy is never a verdict on the version (reason `store-damaged` / `artifact-damaged`
is a repair, reconciler.core.reasons): the registry's bytes, checked against the pinned sha256
and the signature exactly as on first fetch, decide again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from reconciler.core.desired import ModelSpec
from reconciler.core.names import Event, Phase
from reconciler.state.damaged import DamagedFiles
from reconciler.state.journal import Journal
from reconciler.state.records import parse
from reconciler.state.store_records import (
    ARTIFACT,
    BLOB,
    Refetched,
    StoreDamaged,
    pending_repairs,
)

log = structlog.get_logger("hotswap.store")

RECENT = 8  # findings kept per model for the status snapshot


class StoreRepair:
    def __init__(
        self,
        journal: Journal,
        damaged: DamagedFiles,
        on_damaged: Callable[[str, str], None] | None = None,
    ) -> None:
        """`on_damaged(model, kind)`: counts the metric (the daemon's registry)."""
        self.journal = journal
        self.damaged = damaged
        self._on_damaged = on_damaged
        self._lock = threading.Lock()
        self._recent: dict[str, list[dict[str, Any]]] = {}
        self._counts: dict[str, int] = {}  # model -> findings since start
        self._pending = pending_repairs(
            (rec.model, parse(rec))
            for rec in journal.records()
            if rec.step in (Event.STORE_DAMAGED, Event.REFETCHED)
        )

    def pending_blobs(self) -> frozenset[str]:
        """The sha256 of blobs found damaged and not fetched again since."""
        with self._lock:
            return frozenset(what for kind, what in self._pending if kind == BLOB)

    def set_aside_blob(self, spec: ModelSpec, path: Path, message: str) -> None:
        moved = self.damaged.set_aside(path, "sha256", spec.sha256)
        self._found(spec, BLOB, spec.sha256, message, moved)

    def set_aside_artifact(self, spec: ModelSpec, key: str, directory: Path, message: str) -> None:
        moved = self.damaged.set_aside(directory, "artifact", key)
        self._found(spec, ARTIFACT, key, message, moved)

    def _found(
        self, spec: ModelSpec, kind: str, what: str, message: str, moved: Path | None
    ) -> None:
        record = StoreDamaged(kind, what, spec.version, message, str(moved) if moved else None)
        self.journal.append(
            spec.name, Event.STORE_DAMAGED, Phase.DONE, to_version=spec.version, detail=record
        )
        with self._lock:
            self._pending[(kind, what)] = spec.name
            self._counts[spec.name] = self._counts.get(spec.name, 0) + 1
            recent = self._recent.setdefault(spec.name, [])
            recent.append({**record.to_detail(), "repaired": False})
            del recent[:-RECENT]
        if self._on_damaged is not None:
            self._on_damaged(spec.name, kind)
        log.error(
            "store.damaged", model=spec.name, version=spec.version, kind=kind, what=what,
            moved_to=record.moved_to, error=message,
        )  # fmt: skip

    def repaired(self, spec: ModelSpec, kind: str, what: str, size: int) -> None:
        """A blob was fetched or an artifact built: journal it if it had been found damaged."""
        with self._lock:
            if self._pending.pop((kind, what), None) is None:
                return
            for entry in self._recent.get(spec.name, []):
                if entry["kind"] == kind and entry["what"] == what:
                    entry["repaired"] = True
        record = Refetched(kind, what, spec.version, size)
        self.journal.append(
            spec.name, Event.REFETCHED, Phase.DONE, to_version=spec.version, detail=record
        )
        log.warning("store.refetched", model=spec.name, version=spec.version, kind=kind, what=what)

    def describe(self) -> dict[str, dict[str, Any]]:
        """model -> {"damaged": findings since start, "repairing": [...], "recent": [...]}."""
        with self._lock:
            out: dict[str, dict[str, Any]] = {}
            for (kind, what), model in self._pending.items():
                entry = out.setdefault(model, {"damaged": 0, "repairing": [], "recent": []})
                entry["repairing"].append({"kind": kind, "what": what})
            for model, recent in self._recent.items():
                entry = out.setdefault(model, {"damaged": 0, "repairing": [], "recent": []})
                entry["damaged"] = self._counts.get(model, 0)
                entry["recent"] = [dict(r) for r in recent]
            return out
