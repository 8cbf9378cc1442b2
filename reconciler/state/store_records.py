"""The journal records of the store's own repairs: `store-damaged` and `refetched`.

Written by `reconciler.ops.repair` when a stored blob or build artifact is found damaged (and set
aside, `reconciler.state.damaged`) and when it has been fetched or built again; read back
through `reconciler.state.records.parse` with the rest. `pending_repairs` replays them: what was
found damaged and not repaired since, which the planner fetches again for a model that serves
from its build artifact meanwhile. Types and compatibility as in `reconciler.state.records`
(both are new in this release: a journal without them reads as one with nothing damaged, and an
older release keeps them as raw records).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.core.names import Event, Phase
from reconciler.state.detail import Typed, get, schema_of

BLOB = "blob"  # a model's bytes in the store, `store/sha256/<hex>`
ARTIFACT = "artifact"  # a build artifact, `artifacts/<build key>/`


@dataclass(frozen=True)
class StoreDamaged(Typed):
    """A local copy that no longer matches its sha256: `what` is the blob's sha256 or the
    artifact's build key; `moved_to` where it was set aside (None: it had to be deleted)."""

    PHASE = Phase.DONE.value
    STEPS = frozenset({Event.STORE_DAMAGED.value})
    kind: str
    what: str
    version: str
    message: str
    moved_to: str | None = None

    def to_detail(self) -> dict[str, Any]:
        return self._detail(
            kind=self.kind, what=self.what, version=self.version, message=self.message,
            moved_to=self.moved_to,
        )  # fmt: skip

    @classmethod
    def from_detail(cls, d: Mapping[str, Any]) -> StoreDamaged:
        schema_of(d, cls.SCHEMA, "store-damaged")
        return cls(
            kind=get(d, "kind", str),
            what=get(d, "what", str),
            version=get(d, "version", str, ""),
            message=get(d, "message", str, ""),
            moved_to=get(d, "moved_to", str, None),
        )


@dataclass(frozen=True)
class Refetched(Typed):
    """A damaged copy made whole again: a blob fetched (and checked as on first fetch) or an
    artifact built again from the verified blob."""

    PHASE = Phase.DONE.value
    STEPS = frozenset({Event.REFETCHED.value})
    kind: str
    what: str
    version: str
    bytes: int = 0

    def to_detail(self) -> dict[str, Any]:
        return self._detail(kind=self.kind, what=self.what, version=self.version, bytes=self.bytes)

    @classmethod
    def from_detail(cls, d: Mapping[str, Any]) -> Refetched:
        schema_of(d, cls.SCHEMA, "refetched")
        return cls(
            kind=get(d, "kind", str),
            what=get(d, "what", str),
            version=get(d, "version", str, ""),
            bytes=get(d, "bytes", int, 0),
        )


def pending_repairs(bodies: Iterable[tuple[str, Any]]) -> dict[tuple[str, str], str]:
    """(kind, what) -> model of every damaged copy not repaired since, from (model, body) pairs
    in journal order."""
    pending: dict[tuple[str, str], str] = {}
    for model, body in bodies:
        if isinstance(body, StoreDamaged):
            pending[(body.kind, body.what)] = model
        elif isinstance(body, Refetched):
            pending.pop((body.kind, body.what), None)
    return pending
