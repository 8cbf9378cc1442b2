"""The journal's head: written with every commit, and a journal cut at its end is caught."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.state.journal import Journal
from reconciler.state.journal_head import (
    HEAD_APP_ID,
    Head,
    Verdict,
    head_path,
    head_report,
    read_head,
    write_head,
)
from reconciler.state.journal_open import check_end
from tests.support.journal_files import delete_tail, fill, reopened

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "journal.db"


def test_every_append_moves_the_head_to_the_new_record(db: Path) -> None:
    j = Journal(db)
    try:
        for _ in range(3):
            rec = j.append("classifier", "fetch", "begin", detail={"step": "fetch v1"})
            assert read_head(head_path(db)) == Head(rec.seq, rec.hash, rec.time)
    finally:
        j.close()
    written = json.loads(head_path(db).read_text())
    assert written["kind"] == "hotswap-journal-head" and written["schema"] == 1
    assert head_report(db) == {"seq": 3, "hash": rec.hash, "time": rec.time}


def test_a_whole_journal_ends_where_its_head_says(db: Path) -> None:
    fill(db, 4)
    with reopened(db, readonly=True) as j:
        end = check_end(j)
    assert end.verdict == Verdict.OK and not end.rows_lost
    assert "seq 4" in end.message


def test_a_deleted_tail_is_reported_with_the_missing_seqs_and_hashes(db: Path) -> None:
    records = fill(db, 6)
    delete_tail(db, after_seq=4)
    with reopened(db, readonly=True) as j:
        assert j.verify().ok, "the shorter chain is valid on its own"
        end = check_end(j)
    assert end.verdict == Verdict.SHORTENED and end.rows_lost
    assert "records 5..6 are missing" in end.message
    assert records[5].hash[:16] in end.message and records[3].hash[:16] in end.message
    assert end.to_json()["head"] == {"seq": 6, "hash": records[5].hash}
    assert end.to_json()["journal_end"] == {"seq": 4, "hash": records[3].hash}


def test_every_row_deleted_is_shortened_too(db: Path) -> None:
    fill(db, 2)
    delete_tail(db, after_seq=0)
    with reopened(db, readonly=True) as j:
        end = check_end(j)
    assert end.verdict == Verdict.SHORTENED and "records 1..2 are missing" in end.message


def test_a_head_one_behind_after_a_crash_is_repaired_and_loses_nothing(db: Path) -> None:
    records = fill(db, 3)
    write_head(head_path(db), Head(2, records[1].hash, records[1].time))  # the crash window
    with reopened(db) as j:
        end = check_end(j)
        assert end.verdict == Verdict.BEHIND and end.repairable and not end.rows_lost
        j.anchor_head()
        assert check_end(j).verdict == Verdict.OK


def test_a_rewritten_tail_is_caught_by_the_hash_the_head_names(db: Path) -> None:
    records = fill(db, 3)
    write_head(head_path(db), Head(3, "f" * 64, records[2].time))
    with reopened(db, readonly=True) as j:
        end = check_end(j)
    assert end.verdict == Verdict.REWRITTEN and end.rows_lost
    assert "seq 3" in end.message and records[2].hash[:16] in end.message


def test_a_missing_head_is_told_from_a_journal_that_never_had_one(db: Path) -> None:
    fill(db, 2)
    head_path(db).unlink()
    with reopened(db, readonly=True) as j:
        assert j.anchored
        assert check_end(j).verdict == Verdict.MISSING
    # a journal from a release that kept no head: nothing in its header says it had one
    con = sqlite3.connect(db)
    con.execute("PRAGMA application_id=0")
    con.close()
    with reopened(db) as j:
        end = check_end(j)
        assert end.verdict == Verdict.NEW and end.repairable
        j.anchor_head()
        assert check_end(j).verdict == Verdict.OK
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA application_id").fetchone()[0] == HEAD_APP_ID
    con.close()


@pytest.mark.parametrize(
    "content", [b"", b"{not json", b'{"kind": "other"}', b'{"kind": "hotswap-journal-head"}',
                b'{"kind": "hotswap-journal-head", "schema": 9, "seq": 1, "hash": "x"}',
                b"\xff\xfe"],
)  # fmt: skip
def test_a_damaged_head_file_is_unreadable_never_an_exception(db: Path, content: bytes) -> None:
    fill(db, 2)
    head_path(db).write_bytes(content)
    with reopened(db, readonly=True) as j:
        end = check_end(j)
    assert end.verdict == Verdict.UNREADABLE and end.repairable and not end.rows_lost
    assert head_report(db) is None


def test_a_failed_head_write_does_not_fail_the_append(db: Path) -> None:
    fill(db, 1)
    head_path(db).unlink()
    head_path(db).mkdir()  # the rename over it fails
    with reopened(db) as j:
        rec = j.append("classifier", "fetch", "begin", detail={"step": "fetch v1"})
        assert rec.seq == 2 and j.head_error


_APPENDER = """
import sys
from pathlib import Path
from reconciler.state.journal import Journal
j = Journal(Path(sys.argv[1]))
while True:
    j.append("classifier", "fetch", "begin", detail={"step": "fetch v1"})
"""


@pytest.mark.parametrize("after", [3, 30])
def test_kill_9_while_appending_leaves_the_head_at_most_one_behind(db: Path, after: int) -> None:
    db.parent.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", _APPENDER, str(db)], env=env)
    try:
        deadline = time.monotonic() + 30
        while (head_report(db) or {}).get("seq", 0) < after:
            assert child.poll() is None and time.monotonic() < deadline, "the appender stalled"
            time.sleep(0.005)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    with reopened(db) as j:
        last = j.last()
        head = read_head(head_path(db))
        assert last is not None and head is not None and j.verify().ok
        assert head.seq in (last.seq, last.seq - 1), (head, last.seq)
        assert j.hash_at(head.seq) == head.hash
        assert check_end(j).verdict in (Verdict.OK, Verdict.BEHIND)
