"""The journal at start: trusted only when whole; an unreadable one is moved aside, not fatal."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from reconciler.core.names import Event, Phase
from reconciler.state import journal as journal_module
from reconciler.state.journal_head import Head, head_path, read_head, write_head
from reconciler.state.journal_open import JournalRefused, open_checked
from reconciler.state.journal_records import HeadRepaired, JournalReplaced, JournalUntrusted
from reconciler.state.records import parse
from tests.support.journal_files import delete_tail, fill, reopened, truncate


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "journal.db"


def opened(db: Path, strict: bool = False):  # -> (Journal, JournalHealth)
    result = open_checked(db, strict=strict)
    assert not isinstance(result, JournalRefused), result
    journal, health = result
    journal.close()
    return health


def journaled(db: Path, health) -> object:
    """The record the daemon writes for it, read back as journal readers do."""
    with reopened(db) as j:
        rec = j.append("-", Event.JOURNAL, health.record.PHASE, detail=health.record)
    return parse(rec)


def test_a_whole_journal_is_trusted_and_nothing_is_reported(db: Path) -> None:
    fill(db, 3)
    health = opened(db)
    assert (health.verdict, health.trusted, health.record) == ("ok", True, None)


def test_a_deleted_tail_is_not_trusted_and_the_record_names_both_ends(db: Path) -> None:
    records = fill(db, 5)
    delete_tail(db, after_seq=3)
    health = opened(db)
    assert health.verdict == "shortened" and not health.trusted
    assert "records 4..5 are missing" in str(health.problem)
    body = journaled(db, health)
    assert isinstance(body, JournalUntrusted) and body.verdict == "shortened"
    assert body.head == {"seq": 5, "hash": records[4].hash}
    assert body.journal_end == {"seq": 3, "hash": records[2].hash}
    # that record is now the journal's end, and its head says so: the next start trusts it
    assert opened(db).verdict == "ok"


def test_an_edited_journal_is_not_trusted(db: Path) -> None:
    fill(db, 3)
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE records SET model = 'other' WHERE seq = 2")
    con.close()
    health = opened(db)
    assert (health.verdict, health.trusted) == ("edited", False)
    body = journaled(db, health)
    assert isinstance(body, JournalUntrusted) and body.first_bad_seq == 2


def test_a_head_behind_after_a_crash_is_trusted_and_rewritten(db: Path) -> None:
    records = fill(db, 3)
    write_head(head_path(db), Head(2, records[1].hash, records[1].time))
    health = opened(db)
    assert (health.verdict, health.trusted, health.record) == ("ok", True, None)
    assert read_head(head_path(db)) == Head(3, records[2].hash, records[2].time)


@pytest.mark.parametrize("damage", ["missing", "unreadable"])
def test_a_lost_head_is_rewritten_and_the_journal_still_trusted(db: Path, damage: str) -> None:
    records = fill(db, 2)
    if damage == "missing":
        head_path(db).unlink()
    else:
        head_path(db).write_bytes(b'{"kind": "hotswap-journal-head", "seq": "x')
    health = opened(db)
    assert (health.verdict, health.trusted) == (f"head-{damage}", True)
    assert read_head(head_path(db)) == Head(2, records[1].hash, records[1].time)
    body = journaled(db, health)
    assert isinstance(body, HeadRepaired) and body.verdict == damage


def test_a_truncated_journal_is_moved_aside_and_a_new_one_names_it(db: Path) -> None:
    records = fill(db, 120)
    truncate(db, 0.5)
    cut = db.read_bytes()
    health = opened(db)
    assert health.verdict == "replaced" and not health.trusted
    moved = Path(str(health.damaged_file))
    assert moved.parent == db.parent and moved.name.startswith("journal.db.damaged-")
    assert moved.read_bytes() == cut, "the evidence is kept as it was"
    with reopened(db) as j:
        assert list(j.records()) == [] and j.verify().ok
    body = journaled(db, health)
    assert isinstance(body, JournalReplaced) and body.damaged_file == str(moved)
    assert 0 < body.records_read < 120 and body.last_readable_seq == body.records_read
    assert body.last_readable_hash == records[body.records_read - 1].hash
    assert body.head == {"seq": 120, "hash": records[-1].hash}


def test_a_garbage_journal_and_its_wal_are_moved_aside_together(db: Path) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a SQLite database, it is a note " * 20)
    db.with_name("journal.db-wal").write_bytes(b"an old write-ahead log")
    health = opened(db)
    assert health.verdict == "replaced"
    moved = Path(str(health.damaged_file))
    assert moved.with_name(moved.name + "-wal").read_bytes() == b"an old write-ahead log"
    assert isinstance(health.record, JournalReplaced) and health.record.records_read == 0
    assert health.record.last_readable_seq is None
    with reopened(db) as j:
        assert j.verify().ok and list(j.records()) == []


def test_an_emptied_journal_file_is_a_shortened_one(db: Path) -> None:
    fill(db, 2)
    db.write_bytes(b"")  # SQLite reads an empty file as a new, empty database
    health = opened(db)
    assert health.verdict == "shortened" and "records 1..2 are missing" in str(health.problem)


def test_strict_refuses_an_unreadable_journal_and_leaves_it_as_it_is(db: Path) -> None:
    fill(db, 50)
    truncate(db, 0.5)
    cut = db.read_bytes()
    refused = open_checked(db, strict=True)
    assert isinstance(refused, JournalRefused) and "malformed" in refused.problem
    assert db.read_bytes() == cut
    assert not list(db.parent.glob("journal.db.damaged-*"))


def test_records_of_the_release_before_read_back_as_an_edited_journal() -> None:
    body = JournalUntrusted.from_detail({"problem": "hash mismatch", "first_bad_seq": 7})
    assert (body.verdict, body.first_bad_seq) == ("edited", 7)
    assert JournalUntrusted.fits(Event.JOURNAL, Phase.FAILED)


def test_a_journal_locked_by_another_process_is_refused_never_moved_aside(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(db, 2)
    monkeypatch.setattr(journal_module, "LOCK_WAIT_S", 0.2)  # the wait is not what is tested
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA journal_mode=DELETE")  # a shell that took the file out of WAL
    holder.execute("BEGIN EXCLUSIVE")
    try:
        refused = open_checked(db)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert isinstance(refused, JournalRefused) and not refused.damaged, refused
    assert "locked" in refused.problem
    assert not list(db.parent.glob("journal.db.damaged-*"))
