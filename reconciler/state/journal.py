"""The journal: a local, append-only, hash-chained record of every transition.

Format (SQLite, WAL mode, synchronous=FULL, so a committed row survives power loss):

    records(seq INTEGER PRIMARY KEY, time TEXT, model TEXT, from_version TEXT, to_version TEXT,
            step TEXT, phase TEXT, desired_digest TEXT, revision TEXT, detail TEXT,
            prev_hash TEXT, hash TEXT)

- `seq` counts from 1 with no gaps; `time` is UTC ISO-8601 with microseconds.
- `step` is a plan step or an event (`reconciler.core.names`: StepName, Event), `phase` is
  `begin` (written and durable *before* the step acts), `done` or `failed`; events that are not
  steps (desired-invalid, restore, override, retry) use the same phases.
- `detail` is canonical JSON (sorted keys, compact separators, ASCII) of a JSON-safe object.
- Chain rule: `hash = sha256(canonical JSON of every other column, prev_hash included)`, and
  `prev_hash` is the previous row's `hash` (64 zeros for seq 1). Editing, deleting or reordering
  any row breaks the chain at that row; `verify()` names the first bad `seq` and never writes.
  The table, its columns and this rule are those of 0.1.0: every journal written since verifies.

The detail of each record that is read back is a typed, versioned record
(`reconciler.state.records`, `reconciler.state.operator_records`), and carries its version as
`"schema"`: 0.1.0 wrote no `"schema"` key (read as schema 0), this release writes schema 1 of

    step begin                    StepBegun      {"step": the plan's line}
    revert begin                  RevertBegun    {"because": reason}
    fetch done                    FetchDone      {"blob", "bytes"}
    build done                    BuildDone      {"build_key", "artifact", "bytes"}
    swap done                     SwapDone       {"promoted", "previous", "build_key", "spec",
                                                  "authorization", ["sequential", "unavailable_ms"]}
    step failed                   StepFailed     {"reason", "message", "terminal", ["traceback"],
                                                  figures...}
    restore begin / done / failed RestoreBegun {"from_seq"} / RestoreDone {"restored",
                                  "build_key"} / RestoreFailed {"message"}
    override done                 OverrideSet    {"action": "set", "spec", "desired_version",
                                                  "reason", "user", "request_id", "requested_at"}
                                  OverrideCleared {"action": "clear", "why", "request_id",
                                                  "set_seq", "was_serving", ["reason", "user"]}
    override failed               OverrideRefused {"action", "request_id", "message", ...}
    retry done                    RetryRequested {"request_id", "reason", "user", ...,
                                                  "cleared_digest", "previous_error", "overridden"}

and `"spec"` is the promoted deployment in its own shape (`"schema": 1`, then every field of
the spec as JSON): it is read with defaults for what it lacks and unknown keys ignored, so a
release that adds or renames a spec field still restores what an earlier one promoted. Other
records (verify, warm, health-check, rollout, retire, revert and unload done; desired, journal
and trust events) are for people: kept and shown as written.

Compatibility: a key added with a default does not bump a schema; a schema is bumped only when an
older reader could no longer read the record right. A record in a schema newer than this release
knows (written by a later release, read after a downgrade) or with a damaged detail is kept raw
(`records.Raw`): `hotswap journal` shows it as written, and no reader fails on it (restore skips
an unreadable promotion and desired state is reconciled instead). Only `reconciler.state.queries`
reads records back; nothing else parses a detail.

The head (`reconciler.state.journal_head`): after each commit, inside the append lock, the new
record's seq and hash are written to `journal.head` beside the file, so a chain cut at its end
is caught too; the SQLite header's `application_id` marks a file whose head was kept.

Readers (`hotswap journal`, `hotswap status`) open the file read-only beside a running daemon,
which WAL allows. The daemon appends from several model workers; one lock serialises appends so
the chain is a total order.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from reconciler.core.canonical import canonical_json
from reconciler.state.crashpoint import crashpoint
from reconciler.state.journal_head import HEAD_APP_ID, Head, head_path, write_head

GENESIS = "0" * 64
SCHEMA_VERSION = 1

_COLUMNS = (
    "seq", "time", "model", "from_version", "to_version", "step", "phase",
    "desired_digest", "revision", "detail", "prev_hash", "hash",
)  # fmt: skip


@dataclass(frozen=True)
class Record:
    seq: int
    time: str
    model: str
    from_version: str | None
    to_version: str | None
    step: str
    phase: str
    desired_digest: str | None
    revision: str | None
    detail: str  # canonical JSON
    prev_hash: str
    hash: str

    def compute_hash(self) -> str:
        body = asdict(self)
        body.pop("hash")
        return hashlib.sha256(canonical_json(body).encode()).hexdigest()

    @property
    def details(self) -> dict[str, Any]:
        try:
            value = json.loads(self.detail)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["detail"] = self.details
        return body


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int
    first_bad_seq: int | None = None
    problem: str | None = None


LOCK_WAIT_S = 5.0  # how long a write or read waits for another process's lock (sqlite's default)


class JournalError(Exception):
    pass


_OPTIONAL = frozenset({"from_version", "to_version", "desired_digest", "revision"})


def _wrong_type(rec: Record) -> str | None:
    """A damaged file can hand back a blob, number or NULL where text was written."""
    for column in _COLUMNS:
        value = getattr(rec, column)
        want: tuple[type, ...] = (int,) if column == "seq" else (str,)
        if column in _OPTIONAL:
            want = (str, type(None))
        if not isinstance(value, want) or isinstance(value, bool):
            return f"column {column} holds a {type(value).__name__}, not {want[0].__name__}"
    return None


class TypedDetail(Protocol):
    """A record type of `reconciler.state.records`: it knows its detail and where it belongs."""

    def to_detail(self) -> dict[str, Any]: ...
    def fits(self, step: str, phase: str) -> bool: ...


class Journal:
    def __init__(self, path: Path, readonly: bool = False) -> None:
        """A writable journal keeps its head (`journal_head`) beside it, `journal.head`."""
        self.path = path
        self.head_path = head_path(path)
        self.head_error: str | None = None  # the last head write that failed (repaired at start)
        self._lock = threading.Lock()
        if readonly:
            if not path.exists():
                raise JournalError(
                    f"{path}: no journal here (has the daemon run with this state dir?)"
                )
            # as_uri() percent-quotes the path: a raw `#`, `?` or `%` would open another file
            uri = f"{path.absolute().as_uri()}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=LOCK_WAIT_S)
            self._refuse_unborn()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None, timeout=LOCK_WAIT_S
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, time TEXT NOT NULL,"
                " model TEXT NOT NULL, from_version TEXT, to_version TEXT, step TEXT NOT NULL,"
                " phase TEXT NOT NULL, desired_digest TEXT, revision TEXT, detail TEXT NOT NULL,"
                " prev_hash TEXT NOT NULL, hash TEXT NOT NULL)"
            )
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._anchored: bool | None = None
        self._marked = False  # this file's header says it keeps a head
        if not readonly:
            _ = self.anchored  # read before the first head write marks the file

    def _refuse_unborn(self) -> None:
        """A reader that comes while the daemon is creating the file finds it without tables:
        that is no journal yet, not a damaged one (unless a head says records were written)."""
        try:
            tables = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.Error:
            return  # unreadable: verification says how
        if tables == 0 and not self.head_path.exists():
            self._db.close()
            raise JournalError(f"{self.path}: no journal here yet (the daemon is creating it)")

    @property
    def anchored(self) -> bool:
        """Whether a head was kept for this file before it was opened (a 0.1.0 journal has
        none yet); False when its header cannot be read (verify reports that)."""
        if self._anchored is None:
            try:
                app_id = self._db.execute("PRAGMA application_id").fetchone()[0]
            except sqlite3.Error:
                app_id = 0
            self._anchored = app_id == HEAD_APP_ID
            self._marked = self._anchored
        return self._anchored

    def close(self) -> None:
        self._db.close()

    def append(
        self,
        model: str,
        step: str,
        phase: str,
        *,
        from_version: str | None = None,
        to_version: str | None = None,
        desired_digest: str | None = None,
        revision: str | None = None,
        detail: TypedDetail | Mapping[str, Any] | None = None,
    ) -> Record:
        """Append one record durably; returns only after the commit reached the disk.

        `detail` is a typed record (`reconciler.state.records`), or a plain dict from a writer
        not migrated yet; a typed one must be written under its own step and phase.
        """
        step, phase = str(step), str(phase)  # a names.StepName / Phase member is stored as text
        if detail is not None and not isinstance(detail, Mapping):
            if not detail.fits(step, phase):
                raise ValueError(f"a {type(detail).__name__} is not a {step} {phase} record")
            detail = detail.to_detail()
        with self._lock:
            last = self._db.execute(
                "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
            now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
            unsigned = Record(
                seq, now, model, from_version, to_version, step, phase, desired_digest, revision,
                canonical_json(dict(detail or {})), prev, "",
            )  # fmt: skip
            record = Record(**{**asdict(unsigned), "hash": unsigned.compute_hash()})
            self._db.execute(
                f"INSERT INTO records ({','.join(_COLUMNS)}) VALUES ({','.join('?' * len(_COLUMNS))})",
                tuple(getattr(record, c) for c in _COLUMNS),
            )
            crashpoint("journal:committed")
            self._write_head(record)
        crashpoint(f"{step}:{phase}")
        return record

    def _write_head(self, record: Record) -> None:
        # After the commit, in the lock: the head is never ahead of the database, and at most
        # one record behind it after a crash. A failed write is not the append's failure (the
        # record is durable); the next start finds the head behind and rewrites it.
        try:
            write_head(self.head_path, Head(record.seq, record.hash, record.time))
            self.head_error = None
        except OSError as e:
            self.head_error = str(e)
            return
        if not self._marked:  # from now on a missing head file is one that was lost
            self._db.execute(f"PRAGMA application_id={HEAD_APP_ID}")
            self._marked = True

    def anchor_head(self) -> None:
        """Make the head name the journal's last record (at start, when it is behind or new)."""
        with self._lock:
            last = self.last()
            if last is not None:
                self._write_head(last)

    def last(self) -> Record | None:
        row = self._db.execute(
            f"SELECT {','.join(_COLUMNS)} FROM records ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return Record(*row) if row else None

    def hash_at(self, seq: int) -> str | None:
        row = self._db.execute("SELECT hash FROM records WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else str(row[0])

    def records(self, model: str | None = None) -> Iterator[Record]:
        query = f"SELECT {','.join(_COLUMNS)} FROM records"
        args: tuple[Any, ...] = ()
        if model is not None:
            query += " WHERE model = ?"
            args = (model,)
        for row in self._db.execute(query + " ORDER BY seq", args):
            yield Record(*row)

    def verify(self) -> VerifyResult:
        """Check the file, then the hash chain end to end; read-only; names the first bad seq.

        A file SQLite itself finds damaged or cannot read (a flipped byte in a page header, the
        schema, or a text value that is no longer UTF-8) is reported as broken, with what SQLite
        said and `first_bad_seq` None; it never raises.
        """
        prev = GENESIS
        count = 0
        expected_seq = 1
        try:
            # Page-level damage the rows would not show, e.g. a cell dropped from a page
            problem = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                return VerifyResult(False, 0, None, f"SQLite integrity check: {problem}")
            for rec in self.records():
                count += 1
                wrong = _wrong_type(rec)
                if wrong:
                    return VerifyResult(False, count, rec.seq, wrong)
                if rec.seq != expected_seq:
                    return VerifyResult(False, count, rec.seq, f"gap: expected seq {expected_seq}")
                if rec.prev_hash != prev:
                    return VerifyResult(
                        False, count, rec.seq, "prev_hash does not match the previous record"
                    )
                if rec.compute_hash() != rec.hash:
                    return VerifyResult(
                        False, count, rec.seq, "record hash does not match its contents"
                    )
                prev = rec.hash
                expected_seq += 1
        except (sqlite3.Error, UnicodeDecodeError) as e:
            # UnicodeDecodeError: SQLite's message quotes corrupt bytes (a column name in a
            # damaged schema) that Python cannot decode
            return VerifyResult(False, count, None, f"SQLite cannot read the journal: {e}")
        return VerifyResult(True, count)

    def size_bytes(self) -> int:
        return sum(
            p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file()
        )
