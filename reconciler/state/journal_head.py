"""The journal's head: its last seq and hash, kept outside journal.db (`<state>/journal.head`).

Why: the hash chain proves that every row follows from the one before it, but a chain cut at its
end (rows deleted, journal.db or its -wal put back from an older copy, flash that lost the last
writes) is still a valid chain. The head says where the chain ended at the last commit, so a
shorter (or rewritten) one is caught: at the daemon's start (`reconciler.state.journal_open`) and
by `hotswap journal --verify`.

`Journal.append` writes it after each commit, inside the same lock, atomically (temp, fsync,
rename, fsync dir; crash points `journal-head:*`). A crash between the commit and the head write
leaves the head one record behind the database: its row is still there with the same hash, so
that is repaired at start. A head ahead of the database, or naming a row whose hash differs,
means records were lost or rewritten. Whoever can write the state directory can rewrite both
files; a copy of the head kept elsewhere (a fleet's reported state: `head_report`) cannot be.

Format (JSON): {"kind": "hotswap-journal-head", "schema": 1, "seq": N, "hash": "...",
"time": "..."} (the last record's seq, hash and time). A journal whose head was ever written
says so in its SQLite header (`application_id`, `HEAD_APP_ID`), so a head file that went
missing is told apart from a journal written by a release that kept none.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from reconciler.state.atomic import atomic_write
from reconciler.state.detail import Unreadable, get, schema_of

KIND = "hotswap-journal-head"
HEAD_SCHEMA = 1
HEAD_APP_ID = 0x68737764  # "hswd": this journal keeps a head file
SHOWN = 16  # hex digits of a hash in a message


class HeadUnreadable(ValueError):
    """The head file exists but does not hold a head (damaged, or not ours)."""


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str
    time: str  # the record's

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "schema": HEAD_SCHEMA,
            "seq": self.seq,
            "hash": self.hash,
            "time": self.time,
        }

    @classmethod
    def from_json(cls, data: Any) -> Head:
        if not isinstance(data, Mapping) or data.get("kind") != KIND:
            raise HeadUnreadable("not a journal head")
        try:
            schema_of(data, HEAD_SCHEMA, "journal head")
            seq, hash_ = get(data, "seq", int), get(data, "hash", str)
            return cls(seq, hash_, get(data, "time", str, ""))
        except Unreadable as e:
            raise HeadUnreadable(str(e)) from e


def head_path(journal_path: Path) -> Path:
    """`journal.db` -> `journal.head`, beside it."""
    return journal_path.with_suffix(".head")


def read_head(path: Path) -> Head | None:
    """The head in `path`; None when there is no file; HeadUnreadable when it is damaged."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise HeadUnreadable(f"{path}: {e}") from e
    try:
        return Head.from_json(json.loads(raw))
    except (ValueError, UnicodeDecodeError) as e:
        raise HeadUnreadable(f"{path}: {e}") from e


def write_head(path: Path, head: Head) -> None:
    data = json.dumps(head.to_json(), sort_keys=True).encode() + b"\n"
    atomic_write(path, data, crashpoints="journal-head")


class Verdict(str, Enum):
    OK = "ok"  # the head names the journal's last record
    BEHIND = "behind"  # a crash after a commit, before its head: the head is rewritten
    NEW = "new"  # no head yet: an empty journal, or one from a release that kept none
    MISSING = "missing"  # the head file of a journal that kept one is gone
    UNREADABLE = "unreadable"  # the head file is damaged
    SHORTENED = "shortened"  # records after the journal's end were committed: they are lost
    REWRITTEN = "rewritten"  # the head's record holds another hash: rewritten from there

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True)
class HeadCheck:
    verdict: Verdict
    message: str
    head: Head | None  # what the head file says (None: missing or unreadable)
    tail: tuple[int, str] | None  # the journal's last seq and hash (None: empty)

    @property
    def rows_lost(self) -> bool:
        """The journal is not what was committed: nothing may be restored from it."""
        return self.verdict in (Verdict.SHORTENED, Verdict.REWRITTEN)

    @property
    def repairable(self) -> bool:
        """The head is to be rewritten to the journal's end now (no record is lost)."""
        return self.verdict in (Verdict.BEHIND, Verdict.NEW, Verdict.MISSING, Verdict.UNREADABLE)

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": str(self.verdict),
            "message": self.message,
            "head": {"seq": self.head.seq, "hash": self.head.hash} if self.head else None,
            "journal_end": {"seq": self.tail[0], "hash": self.tail[1]} if self.tail else None,
        }


def check_head(
    head: Head | HeadUnreadable | None,
    tail: tuple[int, str] | None,
    hash_at: Callable[[int], str | None],
    anchored: bool,
) -> HeadCheck:
    """Compare the head with the journal's end (`tail`); `hash_at(seq)` reads one row's hash;
    `anchored`: the journal's header says a head was kept for it."""
    end = f"seq {tail[0]} (hash {tail[1][:SHOWN]})" if tail else "no records"
    if not isinstance(head, Head):
        return _without_head(head, tail, end, anchored)
    said = f"seq {head.seq} (hash {head.hash[:SHOWN]})"
    if tail is None or head.seq > tail[0]:
        first = tail[0] + 1 if tail else 1
        message = (
            f"the journal is SHORTENED: its head says {said} was committed, the journal ends"
            f" at {end}; records {first}..{head.seq} are missing"
        )
        return HeadCheck(Verdict.SHORTENED, message, head, tail)
    found = hash_at(head.seq)
    if found != head.hash:
        message = (
            f"the journal was REWRITTEN: its head says {said}, the journal holds hash"
            f" {str(found)[:SHOWN]} at seq {head.seq}"
        )
        return HeadCheck(Verdict.REWRITTEN, message, head, tail)
    if head.seq < tail[0]:
        message = (
            f"the journal head at {said} is behind the journal's end at {end} (a crash between"
            " a commit and its head, or a commit in progress): nothing is lost"
        )
        return HeadCheck(Verdict.BEHIND, message, head, tail)
    return HeadCheck(Verdict.OK, f"it ends where its head says, at {end}", head, tail)


def _without_head(
    error: HeadUnreadable | None, tail: tuple[int, str] | None, end: str, anchored: bool
) -> HeadCheck:
    unknown = f"the journal ends at {end}, whether records were lost after it cannot be told"
    if error is not None:
        return HeadCheck(
            Verdict.UNREADABLE, f"the journal head cannot be read ({error}); {unknown}", None, tail
        )
    if anchored and tail is not None:
        return HeadCheck(
            Verdict.MISSING, f"the journal head file is missing; {unknown}", None, tail
        )
    return HeadCheck(Verdict.NEW, f"no journal head yet; the journal ends at {end}", None, tail)


def head_report(journal_path: Path) -> dict[str, Any] | None:
    """The head as a dict, for a report that leaves the device (a fleet's reported state):
    {"seq", "hash", "time"}; None when there is none or it cannot be read."""
    try:
        head = read_head(head_path(journal_path))
    except HeadUnreadable:
        return None
    return None if head is None else {"seq": head.seq, "hash": head.hash, "time": head.time}
