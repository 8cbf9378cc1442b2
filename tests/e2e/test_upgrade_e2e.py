"""A real daemon started on the state directory 0.1.0 left behind: it restores v1 from the old
records before anything else, and serves on from that instance when desired state asks for v1
from another registry (the same bytes: the example models are built deterministically)."""

from __future__ import annotations

from pathlib import Path

from tests.support import upgrade
from tests.support.daemon import Daemon
from tests.support.e2e import in_sync, model_row, select, wait_records, wait_served
from tests.support.kit import Kit


def test_the_daemon_restores_what_0_1_0_promoted_and_serves_on_from_it(
    kit: Kit, daemon, tmp_path: Path
) -> None:
    # The design of this test rests on it: the kit's v1 is the very blob 0.1.0 promoted, but
    # signed by another publisher key and found at other paths (so another desired digest).
    assert kit.docs["1"]["spec"]["model"]["sha256"] == upgrade.V1_SHA256
    d: Daemon = daemon(state=upgrade.copy_state(tmp_path))
    kit.write(d.desired, "1")
    d.start()
    wait_served(d, "1", timeout=60)

    new = select(d.journal_records(), after_seq=upgrade.RECORDS)
    begin, done = new[:2]  # the daemon's first records: the restore, before any reconcile
    assert (begin["step"], begin["phase"], begin["to_version"]) == ("restore", "begin", "1")
    assert begin["detail"] == {"schema": 1, "from_seq": upgrade.LAST_SWAP_SEQ}
    assert (done["step"], done["phase"], done["detail"]["restored"]) == ("restore", "done", "1")
    assert begin["desired_digest"] == upgrade.V1_DIGEST
    # desired state changed the version the override was set against (3): it ended by itself
    [cleared] = wait_records(d, "the override ended", step="override", after_seq=upgrade.RECORDS)
    assert cleared["detail"]["why"] == "desired version changed 3 -> 1"

    d.wait_for(lambda: in_sync(d, version="1"), 30, "classifier in sync on v1")
    active = model_row(d.status())["active"]
    # the restored instance, authorised by 0.1.0's record, not one loaded from the kit
    assert active["authorization"]["keyid"] == upgrade.FIXTURE_KEYID
    assert active["digest"] == upgrade.V1_DIGEST
    later = select(d.journal_records(), after_seq=upgrade.RECORDS)
    assert not [r for r in later if r["step"] in ("fetch", "build", "warm", "swap")], later
    verified = d.cli("journal", "--verify")
    assert verified.returncode == 0, verified.stderr
    assert "hash chain intact" in verified.stdout
