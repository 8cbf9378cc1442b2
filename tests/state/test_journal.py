"""The journal: durable, append-only, hash-chained; verify names the first bad record."""

from __future__ import annotations

import itertools
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from reconciler.state import queries
from reconciler.state.journal import GENESIS, Journal, JournalError
from reconciler.state.journal_head import head_path

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "journal.db"


def fill(path: Path, n: int = 5) -> list:
    j = Journal(path)
    try:
        return [
            j.append(
                "classifier",
                "fetch",
                "begin" if i % 2 == 0 else "done",
                from_version="1",
                to_version="2",
                desired_digest="d" * 64,
                detail={"i": i, "note": "ünïcode"},
            )
            for i in range(n)
        ]
    finally:
        j.close()


def tamper(path: Path, sql: str, *args: object) -> None:
    con = sqlite3.connect(path)
    with con:
        con.execute(sql, args)
    con.close()


def verify(path: Path):
    j = Journal(path, readonly=True)
    try:
        return j.verify()
    finally:
        j.close()


def test_append_returns_chained_records_and_verify_passes(db: Path) -> None:
    written = fill(db, 5)
    assert [r.seq for r in written] == [1, 2, 3, 4, 5]
    assert written[0].prev_hash == GENESIS
    for prev, rec in itertools.pairwise(written):
        assert rec.prev_hash == prev.hash
    for rec in written:
        assert rec.hash == rec.compute_hash()
        assert rec.time.endswith("+00:00")
    j = Journal(db, readonly=True)
    assert list(j.records()) == written
    assert written[1].details == {"i": 1, "note": "ünïcode"}
    assert written[1].detail.isascii()  # canonical JSON is ASCII
    result = j.verify()
    assert result.ok and result.records == 5 and result.first_bad_seq is None


def test_records_filter_by_model(db: Path) -> None:
    j = Journal(db)
    j.append("a", "swap", "done")
    j.append("b", "swap", "done")
    j.append("a", "retire", "done")
    assert [(r.model, r.step) for r in j.records("a")] == [("a", "swap"), ("a", "retire")]
    assert [r.seq for r in j.records("b")] == [2]


def test_empty_journal_verifies(db: Path) -> None:
    Journal(db).close()
    result = verify(db)
    assert result.ok and result.records == 0


def test_verify_catches_an_edited_detail(db: Path) -> None:
    fill(db, 5)
    tamper(db, "UPDATE records SET detail = ? WHERE seq = 3", '{"i":99}')
    result = verify(db)
    assert not result.ok
    assert result.first_bad_seq == 3
    assert "hash" in (result.problem or "")


def test_verify_catches_an_edited_column_other_than_detail(db: Path) -> None:
    fill(db, 5)
    tamper(db, "UPDATE records SET to_version = '9' WHERE seq = 4")
    assert verify(db).first_bad_seq == 4


def test_verify_catches_a_deleted_middle_row(db: Path) -> None:
    fill(db, 5)
    tamper(db, "DELETE FROM records WHERE seq = 3")
    result = verify(db)
    assert not result.ok
    assert result.first_bad_seq == 4  # the row after the gap
    assert "gap" in (result.problem or "")


def test_verify_catches_a_changed_prev_hash(db: Path) -> None:
    fill(db, 5)
    tamper(db, "UPDATE records SET prev_hash = ? WHERE seq = 3", "f" * 64)
    result = verify(db)
    assert not result.ok and result.first_bad_seq == 3
    assert "prev_hash" in (result.problem or "")


def test_verify_catches_reordered_rows(db: Path) -> None:
    fill(db, 5)
    # swap the sequence numbers of rows 2 and 3
    tamper(db, "UPDATE records SET seq = -2 WHERE seq = 2")
    tamper(db, "UPDATE records SET seq = 2 WHERE seq = 3")
    tamper(db, "UPDATE records SET seq = 3 WHERE seq = -2")
    result = verify(db)
    assert not result.ok and result.first_bad_seq == 2


def test_verify_catches_a_flipped_byte_in_the_hash_column(db: Path) -> None:
    written = fill(db, 5)
    h = written[1].hash
    flipped = ("0" if h[10] != "0" else "1").join((h[:10], h[11:]))
    tamper(db, "UPDATE records SET hash = ? WHERE seq = 2", flipped)
    result = verify(db)
    assert not result.ok and result.first_bad_seq == 2


def test_verify_never_writes(db: Path) -> None:
    fill(db, 3)
    tamper(db, "UPDATE records SET detail = '{}' WHERE seq = 2")
    before = db.read_bytes()
    verify(db)
    verify(db)
    assert db.read_bytes() == before


def test_last_promoted_is_the_last_swap_done_per_model_and_forgets_unloaded(db: Path) -> None:
    j = Journal(db)
    j.append("a", "swap", "done", to_version="1")
    j.append("b", "swap", "done", to_version="1")
    j.append("a", "swap", "done", to_version="2")
    j.append("a", "swap", "begin", to_version="3")  # not done: does not count
    j.append("a", "swap", "failed", to_version="3")
    j.append("a", "health-check", "done", to_version="4")  # not a swap
    j.append("b", "unload", "begin")
    assert {m: e.rec.to_version for m, e in queries.last_promoted(j.records()).items()} == {
        "a": "2",
        "b": "1",
    }
    j.append("b", "unload", "done")
    assert {m: e.rec.to_version for m, e in queries.last_promoted(j.records()).items()} == {
        "a": "2"
    }
    j.append("b", "swap", "done", to_version="5")  # deployed again after the unload
    promoted = {m: e.rec for m, e in queries.last_promoted(j.records()).items()}
    assert {m: r.to_version for m, r in promoted.items()} == {"a": "2", "b": "5"}
    assert promoted["a"].seq == 3 and promoted["a"].step == "swap"


def test_records_survive_reopening_and_the_chain_continues(db: Path) -> None:
    written = fill(db, 3)
    j = Journal(db)
    assert list(j.records()) == written
    rec = j.append("classifier", "swap", "done", to_version="2")
    assert rec.seq == 4 and rec.prev_hash == written[-1].hash
    j.close()
    assert verify(db).ok and verify(db).records == 4


def test_wal_mode_and_synchronous_full_are_set(db: Path) -> None:
    j = Journal(db)
    j.append("classifier", "fetch", "begin")
    # journal_mode=WAL is persistent in the file: a fresh connection sees it
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    # synchronous is per connection: check the journal's own
    assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    j.close()


def test_concurrent_appends_keep_one_valid_chain(db: Path) -> None:
    j = Journal(db)
    threads_n, per_thread = 8, 25
    start = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                j.append(f"model-{k}", "fetch", "begin", detail={"i": i})
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    seqs = [r.seq for r in j.records()]
    assert seqs == list(range(1, threads_n * per_thread + 1))
    for k in range(threads_n):
        assert [r.details["i"] for r in j.records(f"model-{k}")] == list(range(per_thread))
    result = j.verify()
    assert result.ok and result.records == threads_n * per_thread
    j.close()


def test_readonly_open_of_a_missing_file_raises_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "journal.db"
    with pytest.raises(JournalError, match="no journal"):
        Journal(path, readonly=True)
    assert not path.exists()
    assert not path.parent.exists()


def test_a_reader_racing_the_creation_sees_no_journal_yet_not_a_broken_one(tmp_path: Path) -> None:
    """The daemon's connect makes the file before its tables; a CLI in that window must not
    call the journal damaged. Once a head says records were written, an empty file is damage."""
    path = tmp_path / "journal.db"
    path.touch()
    with pytest.raises(JournalError, match="no journal here yet"):
        Journal(path, readonly=True)
    head_path(path).write_text("{}")
    Journal(path, readonly=True).close()  # opened: verification judges it, it is not absent


def test_readonly_journal_refuses_writes(db: Path) -> None:
    fill(db, 1)
    j = Journal(db, readonly=True)
    with pytest.raises(sqlite3.OperationalError):
        j.append("classifier", "swap", "done")
    assert [r.seq for r in j.records()] == [1]


def _cli(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "journal", *args, "--state-dir", str(state)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=state.parent,
        timeout=60,
    )


def test_cli_verify_exit_codes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    fill(state / "journal.db", 4)
    ok = _cli(state, "--verify")
    assert ok.returncode == 0, ok.stderr
    assert "4 records" in ok.stdout
    tamper(state / "journal.db", "UPDATE records SET detail = '{}' WHERE seq = 2")
    bad = _cli(state, "--verify")
    assert bad.returncode == 1
    assert "seq 2" in bad.stderr
    missing = _cli(tmp_path / "empty-state", "--verify")
    assert missing.returncode == 2


@pytest.mark.parametrize("dirname", ["state#1", "state?x=1", "state%41", "state with space"])
def test_readonly_open_works_whatever_the_state_dir_is_called(tmp_path: Path, dirname: str) -> None:
    """The read-only open goes through a SQLite URI; the path must be quoted, or `#`/`?`/`%`
    make it open (and create) some other file."""
    db = tmp_path / dirname / "journal.db"
    fill(db, 2)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = verify(db)
    assert result.ok and result.records == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == before
