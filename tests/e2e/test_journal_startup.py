"""The daemon at start with a damaged journal: unreadable is refused, edited is not trusted."""

from __future__ import annotations

import sqlite3

from tests.support.daemon import Daemon
from tests.support.e2e import select, wait_served
from tests.support.kit import Kit


def _served_v1_then_stopped(kit: Kit, d: Daemon) -> None:
    kit.write(d.desired, "1")
    d.start()
    wait_served(d, "1")
    d.stop()


def test_an_unreadable_journal_stops_the_daemon_with_a_clear_message(kit: Kit, daemon) -> None:
    d: Daemon = daemon()
    _served_v1_then_stopped(kit, d)
    journal = d.state / "journal.db"
    data = bytearray(journal.read_bytes())
    data[:16] = b"not a database!!"  # the SQLite header
    journal.write_bytes(bytes(data))
    d.start()
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
