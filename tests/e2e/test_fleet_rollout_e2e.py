"""`hotswap fleet status` and `hotswap fleet rollout` against three real daemons, one per ring,
one real broker and one git repository."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.fleet import fleet_repo, git, hotswap, start_device
from tests.support.kit import Kit
from tests.support.mosquitto import Mosquitto

RINGS = ["canary", "early", "all"]


def test_ring_rollout_of_a_good_then_a_bad_version(
    kit: Kit, daemon, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    repo = fleet_repo(tmp_path / "fleet", kit, RINGS, "1", releases=["2", "3"])
    devices = [
        start_device(daemon, repo, ring, f"dev-{ring}", mosquitto.url, tmp_path / f"state-{ring}")
        for ring in RINGS
    ]
    for d in devices:
        d.wait_version("1", timeout=60)
    broker = ["--broker", mosquitto.url]
    status = hotswap("fleet", "status", *broker, "--json", "--wait", "5s")
    assert status.returncode == 0, status.stdout + status.stderr
    assert json.loads(status.stdout)["by_version"] == {"classifier=1": 3}

    plan = hotswap("fleet", "rollout", "--repo", str(repo), "--model", "classifier", "--version",
                   "2", "--dry-run")  # fmt: skip
    assert (
        plan.returncode == 0
        and "1. ring canary: commit rings/canary/classifier.yaml" in plan.stdout
    )
    assert git(repo, "rev-list", "--count", "HEAD") == "1"  # a dry run commits nothing

    rollout = ["fleet", "rollout", "--repo", str(repo), "--model", "classifier", *broker,
               "--soak", "1s", "--timeout", "60s"]  # fmt: skip
    good = hotswap(*rollout, "--version", "2")
    assert good.returncode == 0, good.stdout + good.stderr
    assert [d.served_version() for d in devices] == ["2", "2", "2"]
    messages = git(repo, "log", "--format=%s").splitlines()
    assert len(messages) == 4 and all("rollout classifier-v2-" in m for m in messages[:3])

    bad = hotswap(*rollout, "--version", "3")  # NaN outputs: fails the health check
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "stopped at ring canary" in bad.stderr and "dev-canary: failed" in bad.stderr
    messages = git(repo, "log", "--format=%s").splitlines()
    assert "revert ring canary" in messages[0] and "ring canary: classifier 2 -> 3" in messages[1]
    changed = git(repo, "diff", "--name-only", "HEAD~2", "HEAD")
    assert changed == ""  # the revert put ring canary back; early and all were never touched
    assert [d.served_version() for d in devices] == ["2", "2", "2"]

    devices[2].kill9()
    everyone = hotswap("fleet", "status", *broker, "--wait", "5s")
    assert (
        everyone.returncode == 1 and "dev-all" in everyone.stdout and "offline" in everyone.stdout
    )
    early = hotswap("fleet", "status", *broker, "--label", "ring=early", "--json")
    assert early.returncode == 0, early.stdout
    assert [d["device"] for d in json.loads(early.stdout)["devices"]] == ["dev-early"]
