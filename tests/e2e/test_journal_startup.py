"""The daemon at start with a damaged journal: an unreadable one is moved aside (refused with
--strict-journal), an edited or shortened one is not trusted; desired state is served."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.support.daemon import Daemon
from tests.support.e2e import select, wait_served
from tests.support.journal_files import delete_tail, truncate
from tests.support.kit import Kit


def _served_v1_then_stopped(kit: Kit, d: Daemon) -> None:
    kit.write(d.desired, "1")
    d.start()
    wait_served(d, "1")
    d.stop()


def test_strict_journal_stops_the_daemon_on_an_unreadable_one_with_a_clear_message(
    kit: Kit, daemon
) -> None:
    d: Daemon = daemon()
    _served_v1_then_stopped(kit, d)
    journal = d.state / "journal.db"
    data = bytearray(journal.read_bytes())
    data[:16] = b"not a database!!"  # the SQLite header
    journal.write_bytes(bytes(data))
    d.start(args=["--strict-journal"])
    assert d.wait_exit(60) == 1
    log = d.log_path.read_text()
    assert "cannot be read" in log and f"mv {journal} {journal}.damaged" in log
    # and the advice works: a new journal, v1 served again from desired state
    journal.rename(journal.with_name("journal.db.damaged"))
    d.start()
    wait_served(d, "1")


def test_an_edited_journal_is_not_restored_from_but_desired_state_is_served(
    kit: Kit, daemon
) -> None:
    d: Daemon = daemon()
    _served_v1_then_stopped(kit, d)
    db = sqlite3.connect(d.state / "journal.db")
    db.execute("UPDATE records SET to_version = '9' WHERE step = 'swap' AND phase = 'done'")
    db.commit()
    db.close()
    d.start()
    wait_served(d, "1")
    records = d.journal_records()
    assert not select(records, step="restore"), "nothing restored from an edited journal"
    assert select(records, step="journal", phase="failed")
    assert select(records, step="swap", phase="done", to_version="1")
    assert "journal.chain-broken" in d.log_path.read_text()


def _journal_report(d: Daemon) -> dict:
    journal = d.status()["journal"]
    assert journal is not None, d.status()
    return journal


def test_a_deleted_journal_tail_is_caught_and_desired_state_served(kit: Kit, daemon) -> None:
    d: Daemon = daemon()
    _served_v1_then_stopped(kit, d)
    before = d.journal_records()
    cut = before[-3]["seq"]
    delete_tail(d.state / "journal.db", after_seq=cut)
    verified = d.cli("journal", "--verify")
    assert verified.returncode == 1 and "SHORTENED" in verified.stderr, verified
    assert f"records {cut + 1}..{before[-1]['seq']} are missing" in verified.stderr
    assert before[-1]["hash"][:16] in verified.stderr
    d.start()
    wait_served(d, "1")
    after = [r for r in d.journal_records() if r["seq"] > cut]
    assert not select(after, step="restore"), "nothing restored from a shortened journal"
    [event] = select(after, step="journal", phase="failed")
    assert event["detail"]["verdict"] == "shortened"
    assert event["detail"]["head"] == {"seq": before[-1]["seq"], "hash": before[-1]["hash"]}
    assert select(after, step="swap", phase="done", to_version="1"), "desired, fully verified"
    assert _journal_report(d)["verdict"] == "shortened" and not _journal_report(d)["trusted"]
    shown = d.cli("status")
    assert "JOURNAL SHORTENED (NOT TRUSTED" in shown.stdout, shown.stdout
    metrics = d.client.get("/metrics").text
    assert 'hotswap_journal_problem{verdict="shortened"} 1.0' in metrics
    assert "hotswap_journal_trusted 0.0" in metrics
    assert '"event": "journal.shortened"' in d.log_path.read_text()


def test_a_truncated_journal_is_moved_aside_and_desired_state_served(kit: Kit, daemon) -> None:
    d: Daemon = daemon()
    _served_v1_then_stopped(kit, d)
    journal = d.state / "journal.db"
    truncate(journal, 0.5)
    cut = journal.read_bytes()
    d.start(args=["--strict-journal"])
    assert d.wait_exit(60) == 1, "--strict-journal refuses it"
    assert journal.read_bytes() == cut and not list(d.state.glob("journal.db.damaged-*"))
    d.start()
    wait_served(d, "1")
    [moved] = [
        p for p in d.state.glob("journal.db.damaged-*") if not p.name.endswith(("-wal", "-shm"))
    ]
    assert moved.read_bytes() == cut, "the damaged file is kept beside the new one as it was"
    records = d.journal_records()
    first = records[0]
    assert (first["seq"], first["step"], first["phase"]) == (1, "journal", "failed")
    assert Path(first["detail"]["damaged_file"]) == moved
    assert first["detail"]["schema"] == 1 and "last_readable_seq" in first["detail"]
    assert not select(records, step="restore")
    assert select(records, step="swap", phase="done", to_version="1")
    report = _journal_report(d)
    assert report["verdict"] == "replaced" and report["damaged_file"] == str(moved)
    assert 'hotswap_journal_problem{verdict="replaced"} 1.0' in d.client.get("/metrics").text
    assert '"event": "journal.replaced"' in d.log_path.read_text()
    assert d.cli("journal", "--verify").returncode == 0
