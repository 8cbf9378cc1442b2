"""End-to-end: `hotswap rollback` and `hotswap retry` against the real daemon.

An operator's rollback is an override the daemon honours until desired state changes version:
resyncs and a kill -9 do not undo it, a new desired version ends it. `retry` clears a
quarantine once. Requests travel through the state directory, never the HTTP API.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from reconciler.state.status import read_snapshot
from reconciler.trust.signing import publish
from tests.support.daemon import Daemon
from tests.support.e2e import (
    VersionWatch,
    in_sync,
    model_row,
    select,
    served,
    wait_passes,
    wait_records,
    wait_served,
)
from tests.support.kit import Kit, write_text


def snapshot_has(d: Daemon, active: str, standby: str | None = None) -> bool:
    """The daemon's own status snapshot (cheaper to poll than `hotswap status`)."""
    m = ((read_snapshot(d.state) or {}).get("models") or {}).get("classifier") or {}
    return (m.get("active") or {}).get("version") == active and (
        standby is None or (m.get("standby") or {}).get("version") == standby
    )


def on_v2_with_v1_standby(daemon, kit: Kit) -> Daemon:
    d: Daemon = daemon()
    kit.write(d.desired, "1")
    d.start(resync=0.5)
    wait_served(d, "1")
    kit.write(d.desired, "2")
    d.wait_for(lambda: snapshot_has(d, "2", standby="1"), what="v2 promoted, v1 kept as standby")
    return d


def publish_as(kit: Kit, desired: Path, from_version: str, version: str) -> None:
    """A new signed release of an existing model's bytes, and desired state asking for it."""
    doc = kit.doc(from_version)
    package = publish(
        Path(doc["spec"]["model"]["source"]),
        "classifier",
        version,
        kit.public_key.with_suffix(".key"),
        kit.registry,
    )
    doc["spec"]["model"]["version"] = version
    doc["spec"]["model"]["source"] = str(package / "model.onnx")
    doc["spec"]["model"]["manifest"] = str(package / "manifest.json")
    write_text(desired / "classifier.yaml", yaml.safe_dump(doc, sort_keys=False))


def test_rollback_holds_through_resync_and_kill9_until_desired_changes_version(
    kit: Kit, daemon
) -> None:
    d = on_v2_with_v1_standby(daemon, kit)
    out = d.cli("rollback", "classifier", "--reason", "test")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == (
        "classifier: rolled back to v1 (was v2);"
        " desired v2 is overridden until desired state changes version"
    )
    assert served(d) == "1"
    records = d.journal_records("classifier")
    [override] = select(records, step="override", phase="done")
    assert override["detail"]["action"] == "set" and override["detail"]["reason"] == "test"
    assert override["detail"]["user"] and override["detail"]["desired_version"] == "2"
    assert (override["from_version"], override["to_version"]) == ("2", "1")
    # the warm standby was swapped back in: no load, no warm-up
    assert select(records, step="swap", phase="done", to_version="1", after_seq=override["seq"])
    assert not select(records, step="warm", after_seq=override["seq"])

    # Resyncs every 0.5 s read the same desired v2 again: the override holds.
    with VersionWatch(d) as watch:
        wait_passes(d, 3)
    watch.assert_only("1")
    status = d.cli("status")
    assert "overridden" in status.stdout, status.stdout
    assert (
        "override: serving v1 by operator rollback (reason: test, by " in status.stdout
        and "until desired changes from v2" in status.stdout
    ), status.stdout
    row = model_row(d.status())
    assert row["override"]["version"] == "1" and row["desired"] == "2"
    plan = d.cli("plan")
    assert plan.returncode == 0, plan.stdout + plan.stderr  # not "changes pending"
    assert "override: classifier serving v1" in plan.stdout

    # Power cut: the override is in the journal, so the restarted daemon keeps serving v1.
    d.kill9()
    mark = d.journal_records()[-1]["seq"]
    d.start(resync=0.5)
    wait_served(d, "1")
    with VersionWatch(d) as watch:
        wait_passes(d, 3)
    watch.assert_only("1")
    assert model_row(d.status())["state"] == "overridden"
    assert not select(d.journal_records(), step="swap", after_seq=mark)

    # Desired state changes version (a fixed release, here v2's bytes signed as "9"): the
    # override ends. (v1's bytes as "9" would have the active version's build key, which
    # `Swap.done` takes for "already swapped": a planner issue of its own, not of overrides.)
    publish_as(kit, d.desired, "2", "9")
    wait_served(d, "9")
    [cleared] = wait_records(
        d, "override cleared", step="override", phase="done", after_seq=override["seq"]
    )
    assert cleared["detail"]["action"] == "clear"
    assert cleared["detail"]["why"] == "desired version changed 2 -> 9"
    d.wait_for(lambda: in_sync(d, version="9"), what="v9 in sync")
    assert model_row(d.status())["override"] is None
    verify = d.cli("journal", "--verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_refusals_queueing_and_cancel(kit: Kit, daemon) -> None:
    d = on_v2_with_v1_standby(daemon, kit)
    out = d.cli("rollback", "classifier", "--to", "7")
    assert out.returncode == 1
    assert "v7 is not in the local store; versions you can roll back to: 1, 2" in out.stderr
    out = d.cli("rollback", "classifier", "--cancel")
    assert out.returncode == 1 and "classifier has no override to cancel" in out.stderr
    assert d.cli("rollback", "classifier", "--to", "1", "--cancel").returncode == 2  # usage
    [refused, _] = select(d.journal_records("classifier"), step="override", phase="failed")
    assert "v7 is not in the local store" in refused["detail"]["message"]
    assert served(d) == "2"

    # With the daemon stopped the request waits in the state dir for its next start.
    d.stop()
    out = d.cli("rollback", "classifier", "--to", "1", "--reason", "queued")
    assert out.returncode == 1
    assert "no daemon is running" in out.stderr and "will be applied when" in out.stderr
    d.start(resync=0.5)
    wait_served(d, "1")
    assert model_row(d.status())["override"]["reason"] == "queued"

    out = d.cli("rollback", "classifier", "--cancel")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "override ended (was serving v1)" in out.stdout
    wait_served(d, "2")
    d.wait_for(lambda: in_sync(d, version="2"), what="back to desired v2")


def test_retry_tries_a_quarantined_version_once_more(kit: Kit, daemon) -> None:
    d: Daemon = daemon()
    kit.write(d.desired, "2")
    d.start(resync=0.5)
    wait_served(d, "2")
    kit.write(d.desired, "3")  # outputs NaN: fails its health check, v2 keeps serving
    [first] = wait_records(d, "v3 quarantined", step="health-check", phase="failed", to_version="3")
    d.wait_for(lambda: model_row(d.status())["state"] == "failed (quarantined)", what="quarantined")
    status = d.cli("status")
    assert "hotswap retry classifier" in status.stdout and "NaN" in status.stdout

    out = d.cli("retry", "classifier", "--reason", "try again")
    assert out.returncode == 1, out.stdout + out.stderr  # it fails again
    assert "quarantine of v3 cleared" in out.stdout
    assert "classifier v3 failed again at health-check" in out.stderr
    assert "quarantined again" in out.stderr
    records = d.journal_records("classifier")
    [retry] = select(records, step="retry", phase="done")
    assert retry["detail"]["cleared_digest"] and retry["detail"]["reason"] == "try again"
    assert len(select(records, step="health-check", phase="failed", to_version="3")) == 2
    assert select(records, step="warm", phase="begin", to_version="3", after_seq=retry["seq"])
    d.wait_for(
        lambda: model_row(d.status())["state"] == "failed (quarantined)", what="quarantined again"
    )
    # and not retried in a loop afterwards
    wait_passes(d, 3)
    again = select(d.journal_records("classifier"), step="health-check", phase="failed")
    assert len(again) == 2 and first["seq"] < again[-1]["seq"]
    assert served(d) == "2"
