"""The boot-count fallback at startup: three boots that died in the same step quarantine."""

from __future__ import annotations

from pathlib import Path

from reconciler.loop.crashloop import quarantine_crash_loops
from reconciler.state import queries
from reconciler.state.journal import Journal
from reconciler.state.records import Entry, StepBegun, StepFailed


def _died_in_warm(journal: Journal, boots: int) -> None:
    for _ in range(boots):
        journal.append("m", "restore", "begin", desired_digest="d1", detail={"from_seq": 1})
        journal.append("m", "restore", "done", desired_digest="d1", detail={"restored": "1"})
        journal.append(
            "m", "warm", "begin", from_version="1", to_version="2", desired_digest="d2",
            detail=StepBegun("warm m v2"),
        )  # fmt: skip


def test_two_boots_are_forgiven_the_third_quarantines(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db")
    _died_in_warm(journal, 2)
    assert quarantine_crash_loops(journal) == []
    assert queries.quarantined(journal.records()) == {}
    _died_in_warm(journal, 1)
    (looped,) = quarantine_crash_loops(journal)
    assert (looped.step, looped.boots) == ("warm", 3)
    last = Entry.of(list(journal.records())[-1])
    assert isinstance(last.body, StepFailed) and last.body.reason == "crash-loop"
    assert (last.rec.step, last.rec.phase, last.rec.to_version) == ("warm", "failed", "2")
    assert queries.quarantined(journal.records())["m"].digest == "d2"
    assert quarantine_crash_loops(journal) == []  # the step is closed now: written once
    journal.close()


def test_a_restore_the_daemon_dies_in_three_boots_running_quarantines_the_promoted_version(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "journal.db")
    for _ in range(3):
        journal.append("m", "restore", "begin", to_version="1", desired_digest="d1",
                       detail={"from_seq": 1})  # fmt: skip
    (looped,) = quarantine_crash_loops(journal)
    assert (looped.step, looped.boots) == ("restore", 3)
    assert queries.quarantined(journal.records())["m"].digest == "d1"
    journal.close()
