"""Typed records of the journal's own integrity (step `journal`), written at the daemon's start.

Written by `reconciler.cli.daemon` from what `reconciler.state.journal_open` found; read back by
`reconciler.state.records.parse` like every other typed record. Three of them:

    journal failed  JournalUntrusted {"verdict": edited | shortened | rewritten, "problem",
                                      "first_bad_seq", "head", "journal_end"}
                    the journal was readable but is not what was committed: nothing restored
    journal failed  JournalReplaced  {"damaged_file", "problem", "records_read",
                                      "last_readable_seq", "last_readable_hash", "head"}
                    the first record of a new journal: the old file could not be read, and was
                    moved aside under the name it gives
    journal done    HeadRepaired     {"verdict": missing | unreadable, "message", "journal_end"}
                    the head file was lost or damaged and is written anew (records trusted)

"head" and "journal_end" are {"seq", "hash"} or null. 0.1.0 (and the release before this one)
wrote `journal failed` as {"problem", "first_bad_seq"}: read as JournalUntrusted, verdict edited.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.core.names import Event, Phase
from reconciler.state.detail import Typed, get, schema_of

_JOURNAL = frozenset({Event.JOURNAL.value})
EDITED = "edited"


def _point(value: Any) -> dict[str, Any] | None:
    """A {"seq", "hash"} as written, or None."""
    if not isinstance(value, Mapping):
        return None
    return {"seq": get(value, "seq", int), "hash": get(value, "hash", str)}


@dataclass(frozen=True)
class JournalUntrusted(Typed):
    PHASE = Phase.FAILED.value
    STEPS = _JOURNAL
    verdict: str  # edited (the chain is broken), shortened or rewritten (the head says so)
    problem: str
    first_bad_seq: int | None = None
    head: dict[str, Any] | None = None
    journal_end: dict[str, Any] | None = None

    def to_detail(self) -> dict[str, Any]:
        return self._detail(
            verdict=self.verdict,
            problem=self.problem,
            first_bad_seq=self.first_bad_seq,
            head=self.head,
            journal_end=self.journal_end,
        )

    @classmethod
    def from_detail(cls, d: Mapping[str, Any]) -> JournalUntrusted:
        schema_of(d, cls.SCHEMA, "journal failure")
        return cls(
            get(d, "verdict", str, EDITED),
            get(d, "problem", str, ""),
            get(d, "first_bad_seq", int, None),
            _point(d.get("head")),
            _point(d.get("journal_end")),
        )


@dataclass(frozen=True)
class JournalReplaced(Typed):
    PHASE = Phase.FAILED.value
    STEPS = _JOURNAL
    damaged_file: str  # where the unreadable journal was moved (its -wal and -shm beside it)
    problem: str  # what SQLite said
    records_read: int  # rows read back from it before it failed
    last_readable_seq: int | None
    last_readable_hash: str | None
    head: dict[str, Any] | None  # what its head file said had been committed

    def to_detail(self) -> dict[str, Any]:
        return self._detail(
            damaged_file=self.damaged_file,
            problem=self.problem,
            records_read=self.records_read,
            last_readable_seq=self.last_readable_seq,
            last_readable_hash=self.last_readable_hash,
            head=self.head,
        )

    @classmethod
    def from_detail(cls, d: Mapping[str, Any]) -> JournalReplaced:
        schema_of(d, cls.SCHEMA, "journal replaced")
        return cls(
            get(d, "damaged_file", str),
            get(d, "problem", str, ""),
            get(d, "records_read", int, 0),
            get(d, "last_readable_seq", int, None),
            get(d, "last_readable_hash", str, None),
            _point(d.get("head")),
        )


@dataclass(frozen=True)
class HeadRepaired(Typed):
    PHASE = Phase.DONE.value
    STEPS = _JOURNAL
    verdict: str  # missing or unreadable
    message: str
    journal_end: dict[str, Any] | None

    def to_detail(self) -> dict[str, Any]:
        return self._detail(
            verdict=self.verdict, message=self.message, journal_end=self.journal_end
        )

    @classmethod
    def from_detail(cls, d: Mapping[str, Any]) -> HeadRepaired:
        schema_of(d, cls.SCHEMA, "journal head repaired")
        return cls(get(d, "verdict", str), get(d, "message", str, ""), _point(d.get("journal_end")))


def journal_kind(phase: str, detail: Mapping[str, Any]) -> Any:
    """The record type of a `journal` record in this phase, or None."""
    if phase == Phase.FAILED and "damaged_file" in detail:
        return JournalReplaced
    if phase == Phase.FAILED and "problem" in detail:  # what every release has written
        return JournalUntrusted
    if phase == Phase.DONE and "verdict" in detail:
        return HeadRepaired
    return None
