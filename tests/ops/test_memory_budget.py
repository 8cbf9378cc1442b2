"""A small device: when two versions cannot be resident, the swap is sequential and reported."""

from __future__ import annotations

from tests.support.daemon import Daemon
from tests.support.e2e import VersionWatch, last_seq, select, wait_records, wait_served
from tests.support.kit import Kit

# The example model's artifact is about 0.9 MB and an instance is budgeted at twice that:
# 3 MiB holds one instance but not two.
ONE_BUT_NOT_TWO = "3M"


def test_sequential_swap_when_both_versions_do_not_fit(kit: Kit, daemon) -> None:
    d: Daemon = daemon()
    kit.write(d.desired, "1")
    d.start(args=["--memory-budget", ONE_BUT_NOT_TWO])
    wait_served(d, "1")
    with VersionWatch(d) as watch:
        kit.write(d.desired, "2")
        [swap] = wait_records(d, "v2 swapped", step="swap", phase="done", to_version="2")
        wait_served(d, "2")
    # the window is visible to clients as 503 "not ready" (documented), never as anything else
    assert all(v in ("1", "2") or v.startswith("HTTP 503") for v in watch.seen), watch.seen
    assert (
        any(v.startswith("HTTP 503") for v in watch.seen) or swap["detail"]["unavailable_ms"] < 50
    )
    assert swap["detail"]["sequential"] is True and swap["detail"]["unavailable_ms"] > 0
    [warm] = select(d.journal_records(), step="warm", phase="done", to_version="2")
    assert warm["detail"]["sequential"] is True
    assert "swap.sequential" in d.log_path.read_text()


def test_a_failed_sequential_swap_reloads_the_old_version(kit: Kit, daemon) -> None:
    d: Daemon = daemon()
    kit.write(d.desired, "2")
    d.start(args=["--memory-budget", ONE_BUT_NOT_TWO])
    wait_served(d, "2")
    kit.write(d.desired, "3")  # outputs NaN: the health check fails after v2 was unloaded
    [revert] = wait_records(d, "revert", step="revert", phase="done", to_version="3")
    assert revert["detail"]["resumed"] == "2"
    assert revert["detail"]["serving"] == "2"
    assert revert["detail"]["unavailable_ms"] > 0
    wait_served(d, "2")


def test_a_version_too_big_for_the_budget_even_alone_leaves_the_active_one_serving(
    kit: Kit, daemon
) -> None:
    d: Daemon = daemon()
    kit.write(d.desired, "1")
    d.start()
    wait_served(d, "1")
    d.stop()
    d.start(args=["--memory-budget", "1M"])  # v1 was restored before any budget applies
    wait_served(d, "1")
    with VersionWatch(d) as watch:
        kit.write(d.desired, "2")
        [failed] = wait_records(d, "refused", step="warm", phase="failed", to_version="2")
    watch.assert_only("1")
    assert failed["detail"]["reason"] == "memory-budget"
    assert "--memory-budget" in failed["detail"]["message"]


def test_a_crash_inside_the_sequential_window_restores_the_old_version(kit: Kit, daemon) -> None:
    d: Daemon = daemon()
    kit.write(d.desired, "1")
    d.start()
    wait_served(d, "1")
    d.stop()
    kit.write(d.desired, "2")
    budget = ["--memory-budget", ONE_BUT_NOT_TWO]
    d.start(env={"HOTSWAP_CRASHPOINT": "warm:done"}, args=budget)  # v1 unloaded, v2 loaded
    assert d.wait_exit(60) == -9
    since = last_seq(d)
    d.start(args=budget)
    wait_records(d, "restore of v1", step="restore", phase="done", to_version="1", after_seq=since)
    wait_served(d, "2")
    out = d.cli("journal", "--verify")
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_canary_that_does_not_fit_beside_the_active_version_is_refused_before_unloading(
    kit: Kit, daemon
) -> None:
    d: Daemon = daemon()
    kit.write(d.desired, "1")
    d.start(args=["--memory-budget", ONE_BUT_NOT_TWO])
    wait_served(d, "1")
    with VersionWatch(d) as watch:
        kit.write(d.desired, "2-canary")
        [failed] = wait_records(d, "the refusal", step="warm", phase="failed", to_version="2")
    watch.assert_only("1")  # never unloaded: no 503 window for a swap that cannot be a canary
    assert failed["detail"]["reason"] == "rollout-no-room"
    assert "strategy immediate" in failed["detail"]["message"]
    assert not select(d.journal_records(), step="swap", phase="done", to_version="2")
