"""`hotswap journal`: one line per record for people, one JSON object per record for scripts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.cli.journal import record_line
from reconciler.cli.main import main
from reconciler.state.journal import Journal
from tests.support.journal_files import delete_tail, fill


def test_lines_name_the_step_the_versions_and_why(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db")
    try:
        swap = journal.append("classifier", "swap", "done", from_version="1", to_version="2")
        failed = journal.append(
            "classifier", "health-check", "failed", to_version="3", detail={"message": "NaN"}
        )
        override = journal.append(
            "classifier", "override", "done", to_version="1", detail={"user": "ops", "reason": ""}
        )
    finally:
        journal.close()
    assert "swap" in record_line(swap, False) and "1 -> 2" in record_line(swap, False)
    assert record_line(failed, False).endswith("NaN")
    assert record_line(override, False).endswith("by ops: no reason given")
    assert json.loads(record_line(swap, True))["to_version"] == "2"


def test_tail_and_model_filter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal = Journal(tmp_path / "journal.db")
    for i in range(4):
        journal.append("a" if i % 2 else "b", "fetch", "done", to_version=str(i))
    journal.close()
    assert (
        main(["journal", "--json", "--state-dir", str(tmp_path), "--model", "a", "--tail", "1"])
        == 0
    )
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["to_version"] == "3"


def test_verify_reports_a_shortened_journal_with_the_missing_seqs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = fill(tmp_path / "journal.db", 5)
    assert main(["journal", "--verify", "--state-dir", str(tmp_path)]) == 0
    assert "hash chain intact; it ends where its head says, at seq 5" in capsys.readouterr().out
    delete_tail(tmp_path / "journal.db", after_seq=2)
    assert main(["journal", "--verify", "--state-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("journal BROKEN: the journal is SHORTENED") and "records 3..5" in err
    assert records[4].hash[:16] in err and records[1].hash[:16] in err


def test_verify_warns_when_the_head_file_is_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(tmp_path / "journal.db", 2)
    (tmp_path / "journal.head").unlink()
    assert main(["journal", "--verify", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert "hash chain intact" in out.out and "head file is missing" in out.err
