"""The journal at the daemon's start: verified, its end checked against its head, and an
unreadable file moved aside for a new journal instead of keeping the device down.

Called once by `reconciler.cli.daemon`, before anything else is built; `hotswap journal
--verify` uses `check_end` too. What it finds is a `JournalHealth`: whether the journal is
trusted (restored from), the record that says what happened (the daemon journals it, logs it
and shows it in status and metrics), and for status the verdict in one word:

    ok               verified, and it ends where its head says (a head one record behind, after
                     a crash between a commit and its head, is rewritten: nothing was lost)
    edited           a row was changed: the chain is broken at `first_bad_seq`
    shortened        records the head says were committed are gone from the end
    rewritten        the head's record holds another hash
    replaced         SQLite could not read the file: moved aside, a new journal started
    head-missing     (trusted) the head file of a journal that kept one is gone: written anew
    head-unreadable  (trusted) the head file is damaged: written anew

Not trusted (edited, shortened, rewritten, replaced): nothing is restored from the journal, the
daemon serves what desired state asks for, every step verified again. With `strict`, an
unreadable journal is refused as before this release (`JournalRefused`): the file stays.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.state import journal as journal_module
from reconciler.state.atomic import fsync_dir
from reconciler.state.journal import Journal, TypedDetail, VerifyResult
from reconciler.state.journal_head import (
    HeadCheck,
    HeadUnreadable,
    Verdict,
    check_head,
    head_path,
    read_head,
)
from reconciler.state.journal_records import EDITED, HeadRepaired, JournalReplaced, JournalUntrusted

DAMAGED = "damaged"


@dataclass(frozen=True)
class JournalHealth:
    verdict: str  # one of the words above
    trusted: bool
    problem: str | None = None  # for people
    record: TypedDetail | None = None  # to journal; None: nothing worth a record happened
    damaged_file: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The `journal` object of status.json."""
        return {"verdict": self.verdict, "trusted": self.trusted, "problem": self.problem,
                "damaged_file": self.damaged_file}  # fmt: skip


OK = JournalHealth("ok", True)


@dataclass(frozen=True)
class JournalRefused:
    """The daemon does not start; the journal is left as it is. `damaged`: SQLite cannot read
    it and `strict` refused to replace it; otherwise it could not be opened (locked by another
    process, no permission, no space) or moved aside, which is no damage to the file."""

    problem: str
    damaged: bool = True


def open_checked(
    path: Path, strict: bool = False
) -> tuple[Journal, JournalHealth] | JournalRefused:
    journal: Journal | None = None
    try:
        journal = Journal(path)
        check = journal.verify()
    except sqlite3.OperationalError as e:  # locked, no permission, no space: not the file's fault
        if journal is not None:
            journal.close()
        return JournalRefused(str(e), damaged=False)
    except sqlite3.DatabaseError as e:
        check = VerifyResult(False, 0, None, str(e))
    if journal is not None and check.ok:
        return journal, _health_of_end(journal)
    if journal is not None and check.first_bad_seq is not None:
        problem = f"the hash chain is broken at seq {check.first_bad_seq}: {check.problem}"
        record = JournalUntrusted(EDITED, str(check.problem), check.first_bad_seq)
        return journal, JournalHealth(EDITED, False, problem, record)
    if journal is not None:
        journal.close()
    if strict:
        return JournalRefused(str(check.problem))
    try:
        return replace_damaged(path, str(check.problem))
    except (OSError, sqlite3.Error) as e:
        return JournalRefused(f"{check.problem}; it could not be moved aside: {e}", damaged=False)


def check_end(journal: Journal) -> HeadCheck:
    """Where the journal ends against what its head says (read-only)."""
    head: Any
    try:
        head = read_head(journal.head_path)
    except HeadUnreadable as e:
        head = e
    last = journal.last()
    tail = (last.seq, last.hash) if last else None
    return check_head(head, tail, journal.hash_at, journal.anchored)


def _health_of_end(journal: Journal) -> JournalHealth:
    end = check_end(journal)
    if end.rows_lost:
        shown = end.to_json()
        record = JournalUntrusted(
            str(end.verdict), end.message, None, shown["head"], shown["journal_end"]
        )
        return JournalHealth(str(end.verdict), False, end.message, record)
    if end.repairable:
        journal.anchor_head()
    if end.verdict in (Verdict.MISSING, Verdict.UNREADABLE):
        repaired = HeadRepaired(str(end.verdict), end.message, end.to_json()["journal_end"])
        return JournalHealth(f"head-{end.verdict}", True, end.message, repaired)
    return OK


def replace_damaged(path: Path, problem: str) -> tuple[Journal, JournalHealth]:
    """Read what can be read of the unreadable journal, move it aside, start a new one whose
    first record says where the old one went and where it ended."""
    count, last = salvage(path)
    try:
        old_head = read_head(head_path(path))
    except HeadUnreadable:
        old_head = None
    moved = move_aside(path)
    journal = Journal(path)
    record = JournalReplaced(
        str(moved), problem, count, last[0] if last else None, last[1] if last else None,
        {"seq": old_head.seq, "hash": old_head.hash} if old_head else None,
    )  # fmt: skip
    message = (
        f"the journal could not be read ({problem}); moved aside to {moved}"
        f" ({count} records read, last readable seq {last[0] if last else '-'}),"
        " a new journal started"
    )
    return journal, JournalHealth("replaced", False, message, record, str(moved))


def salvage(path: Path) -> tuple[int, tuple[int, str] | None]:
    """How many records SQLite still reads from a damaged journal, in order, and the last
    one's (seq, hash); (0, None) when nothing can be read. A file cut short fails at once (its
    header counts pages that are gone), so a copy whose header counts the pages still there is
    read too; the damaged file itself is never written."""
    found = _read_rows(path)
    if found[0] == 0:
        with tempfile.TemporaryDirectory(prefix="hotswap-salvage-") as tmp:
            copy = Path(tmp) / path.name
            if _copy_with_pages_that_remain(path, copy):
                found = _read_rows(copy)
    return found


def _read_rows(path: Path) -> tuple[int, tuple[int, str] | None]:
    count, last = 0, None
    try:
        db = sqlite3.connect(
            f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=journal_module.LOCK_WAIT_S
        )
        try:
            for seq, hash_ in db.execute("SELECT seq, hash FROM records ORDER BY seq"):
                count += 1
                if isinstance(seq, int) and isinstance(hash_, str):
                    last = (seq, hash_)
        finally:
            db.close()
    except (sqlite3.Error, UnicodeDecodeError, ValueError):
        pass  # what was read so far is what there is
    return count, last


def _copy_with_pages_that_remain(path: Path, copy: Path) -> bool:
    """A copy of the file's whole pages, its header's page count set to them (and its -wal
    beside it); False when the file has no SQLite header to go by."""
    try:
        data = bytearray(path.read_bytes())
    except OSError:
        return False
    if len(data) < 100 or not data.startswith(b"SQLite format 3\0"):
        return False
    page_size = int.from_bytes(data[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512:
        return False
    pages = len(data) // page_size
    del data[pages * page_size :]
    data[28:32] = pages.to_bytes(4, "big")  # the in-header database size
    copy.write_bytes(bytes(data))
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
    return True


def move_aside(path: Path) -> Path:
    """`journal.db` -> `journal.db.damaged-<UTC time>`, its -wal and -shm beside it under the
    names SQLite looks for, so the three still open together. The siblings go first: a new
    journal.db must never meet an old -wal (SQLite would replay it into the new file)."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    target = path.with_name(f"{path.name}.{DAMAGED}-{stamp}")
    for suffix in ("-wal", "-shm", ""):
        sibling = path.with_name(path.name + suffix)
        if sibling.exists():
            sibling.rename(target.with_name(target.name + suffix))
    fsync_dir(path.parent)
    return target
