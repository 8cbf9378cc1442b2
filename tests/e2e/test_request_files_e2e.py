"""Special files in `state/requests/` never wedge the real daemon's loop: a symlink to a FIFO (a
read that would block for ever) is refused, journaled and removed, and a desired change written
next is still applied."""

from __future__ import annotations

import os

from tests.support.e2e import select, wait_records, wait_served
from tests.support.kit import Kit


def test_a_symlink_to_a_fifo_in_requests_is_refused_and_desired_state_still_applies(
    daemon, kit: Kit
) -> None:
    d = daemon()
    kit.write(d.desired, "1")
    d.start()
    wait_served(d, "1")
    os.mkfifo(d.state / "pipe")
    entry = d.state / "requests" / f"{'f' * 32}.json"
    entry.symlink_to(d.state / "pipe")
    kit.write(d.desired, "2")
    wait_served(d, "2", timeout=60)
    wait_records(d, "the refusal", timeout=30, step="override", phase="failed")
    [refusal] = select(d.journal_records(), step="override", phase="failed")
    assert refusal["detail"]["file_kind"] == "symlink"
    assert not os.path.lexists(entry) and (d.state / "pipe").exists()
