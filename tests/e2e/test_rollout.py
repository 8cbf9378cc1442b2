"""Canary and shadow rollouts end to end: the real daemon under real traffic.

Each test pushes a candidate with a rollout rule and checks what clients saw (who answered,
how many failed) and what the journal recorded (each stage, each verdict). The candidates are
the example models: v2 (good), v5 (fails at inference on images whose first pixel is > 1, but
passes its health check), v6 (v2's answers at several times v2's cost).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from tests.support.daemon import Daemon
from tests.support.e2e import (
    INFER_BYTES,
    LoadGenerator,
    VersionWatch,
    model_row,
    select,
    wait_passes,
    wait_records,
    wait_served,
)
from tests.support.kit import Kit, infer_body

# Trips v5 (first pixel > 1.0); v1, v2 and v6 answer it like any other image.
TRIP_BYTES = json.dumps(infer_body(2.0)).encode()


def rollout(strategy: str, steps: list[tuple[float, str]], **gates: Any) -> Any:
    def mutate(doc: dict[str, Any]) -> None:
        # Judged by the rollout gates here, not by a warm-up latency budget that a loaded
        # 2-core test machine can blow for the deliberately slow v6.
        doc["spec"]["health"].pop("max_latency_ms", None)
        doc["spec"]["rollout"] = {
            "strategy": strategy,
            "steps": [{"weight": w, "for": f} for w, f in steps],
            "gates": gates,
            "on_failure": "revert",
        }

    return mutate


def started(daemon, kit: Kit, version: str = "1") -> Daemon:
    d: Daemon = daemon()
    kit.write(d.desired, version)
    d.start()
    wait_served(d, version)
    return d


def revert_seconds(d: Daemon) -> tuple[float, float]:
    """(count, sum) of the daemon's hotswap_revert_seconds histogram."""
    text = d.client.get("/metrics").text
    count = re.search(r'^hotswap_revert_seconds_count\{model="classifier"\} (\S+)$', text, re.M)
    total = re.search(r'^hotswap_revert_seconds_sum\{model="classifier"\} (\S+)$', text, re.M)
    return (float(count.group(1)) if count else 0.0, float(total.group(1)) if total else 0.0)


def versions_seen(load: LoadGenerator) -> set[str]:
    return {v for thread in load.result.per_thread for _, v in thread}


def test_canary_that_holds_its_gates_is_promoted_after_every_stage(daemon, kit: Kit) -> None:
    d = started(daemon, kit)
    load = LoadGenerator(d, threads=2, max_s=60).start()
    try:
        kit.write(
            d.desired,
            "2",
            mutate=rollout("canary", [(30, "1s"), (60, "1s")], max_error_rate=0.0, min_requests=5),
        )
        wait_records(d, "v2 promoted", timeout=60, step="swap", phase="done", to_version="2")
    finally:
        result = load.stop()
    assert result.failures == []
    assert {"1", "2"} <= versions_seen(load)  # both answered while the canary ran
    recs = d.journal_records("classifier")
    stages = select(recs, step="rollout", to_version="2")
    assert [(r["phase"], r["detail"].get("stage")) for r in stages] == [
        ("begin", None), ("done", 1), ("begin", None), ("done", 2),
    ]  # fmt: skip
    swap = select(recs, step="swap", phase="done", to_version="2")[0]
    assert swap["seq"] > stages[-1]["seq"]
    assert stages[1]["detail"]["figures"]["candidate"]["requests"] >= 5
    assert stages[1]["detail"]["figures"]["candidate"]["errors"] == 0
    wait_served(d, "2")


def test_canary_whose_candidate_fails_requests_is_reverted_within_its_first_step(
    daemon, kit: Kit
) -> None:
    d = started(daemon, kit)
    # One request in four trips v5; the canary sends it half the traffic for up to 60 s.
    load = LoadGenerator(d, threads=2, max_s=90, bodies=[INFER_BYTES] * 3 + [TRIP_BYTES]).start()
    try:
        kit.write(
            d.desired,
            "5",
            mutate=rollout(
                "canary", [(50, "60s"), (90, "60s")], max_error_rate=0.02, min_requests=10
            ),
        )
        [failed] = wait_records(
            d, "the canary's gate to fail", timeout=60, step="rollout", phase="failed"
        )
        begun = select(d.journal_records(), step="rollout", phase="begin", to_version="5")[0]
        time.sleep(1.0)  # traffic after the revert: all of it must succeed, on v1
        after = load.successes()
        time.sleep(1.0)
        assert load.successes() > after
    finally:
        result = load.stop()
    detail = failed["detail"]
    assert detail["reason"] == "rollout-gate"
    assert "error rate" in detail["message"] and "all traffic back to v1" in detail["message"]
    assert detail["stage"] == 1
    assert len(select(d.journal_records(), step="rollout", phase="begin")) == 1  # never stage 2
    # Judged within the first step (60 s), as soon as min_requests were in.
    assert failed["time"] and begun["time"]
    # Client failures: only candidate requests that tripped before the gate judged, never more
    # than the requests it takes to judge (min_requests) plus the two in flight.
    assert 0 < len(result.failures) <= 10 + 2, result.failures[:3]
    assert all("HTTP 500" in f for f in result.failures)
    assert (
        max(load.failed_at) < time.monotonic() - 1.5
    )  # none in the last seconds, after the revert
    assert select(d.journal_records(), step="revert", phase="done", to_version="5")
    assert not select(d.journal_records(), step="swap", phase="done", to_version="5")
    row = model_row(d.status())
    assert row["active"]["version"] == "1" and row["candidate"] is None
    assert "quarantined" in row["state"] and "error rate" in (row["last_error"] or "")
    count, total = revert_seconds(d)
    assert count >= 1
    print(f"\nrevert: decision -> first request on v1: {total / count * 1000:.3f} ms")


def test_canary_whose_candidate_is_slow_fails_the_latency_gate_with_no_client_failures(
    daemon, kit: Kit
) -> None:
    d = started(daemon, kit, "2")
    load = LoadGenerator(d, threads=2, max_s=60).start()
    try:
        kit.write(
            d.desired,
            "6",  # ~10x v2's inference time alone, so contention on a busy machine cannot hide it
            mutate=rollout("canary", [(30, "2s")], max_p99_latency_ratio=1.3, min_requests=5),
        )
        [failed] = wait_records(d, "the latency gate", timeout=60, step="rollout", phase="failed")
    finally:
        result = load.stop()
    assert result.failures == []
    assert "p99 latency" in failed["detail"]["message"]
    assert failed["detail"]["figures"]["candidate"]["requests"] >= 5
    wait_served(d, "2")


def test_shadow_with_divergent_outputs_is_not_promoted_and_never_answers(daemon, kit: Kit) -> None:
    d = started(daemon, kit)
    with VersionWatch(d, interval=0.01) as watch:
        kit.write(
            d.desired,
            "2",  # new weights: a different classifier, whose answers differ from v1's
            mutate=rollout("shadow", [(100, "1s")], max_output_divergence=1e-3, min_requests=5),
        )
        [failed] = wait_records(d, "the shadow to fail", timeout=60, step="rollout", phase="failed")
    watch.assert_only("1")  # a shadow never answers a client
    assert "diverge" in failed["detail"]["message"]
    assert failed["detail"]["figures"]["comparison"]["compared"] >= 5
    assert not select(d.journal_records(), step="swap", phase="done", to_version="2")


def test_shadow_that_agrees_is_promoted(daemon, kit: Kit) -> None:
    d = started(daemon, kit, "2")
    with VersionWatch(d, interval=0.01):
        kit.write(
            d.desired,
            "6",  # v2's answers by another graph
            mutate=rollout(
                "shadow", [(100, "1s")], max_output_divergence=1e-4, min_top1_agreement=1.0,
                min_requests=5,
            ),
        )  # fmt: skip
        wait_records(d, "v6 promoted", timeout=60, step="swap", phase="done", to_version="6")
    [passed] = select(d.journal_records(), step="rollout", phase="done", to_version="6")
    comparison = passed["detail"]["figures"]["comparison"]
    assert comparison["compared"] >= 5 and comparison["top1_agreement"] == 1.0
    wait_served(d, "6")


@pytest.mark.timeout(120)
def test_kill_9_mid_canary_restores_the_active_version_and_runs_the_canary_again(
    daemon, kit: Kit
) -> None:
    d = started(daemon, kit)
    with VersionWatch(d, interval=0.02):
        # long enough for a few `hotswap status` calls on a loaded machine
        kit.write(d.desired, "2", mutate=rollout("canary", [(50, "8s")], min_requests=3))
        wait_records(d, "the canary to begin", timeout=60, step="rollout", phase="begin")
        shown = ""

        def status_shows_stage() -> bool:
            nonlocal shown
            shown = d.cli("status").stdout
            return "canary stage 1/1: 50% of requests answered by the candidate" in shown

        d.wait_for(status_shows_stage, 10, "hotswap status to show the canary")
        assert "of 8s in; candidate" in shown
        d.kill9()
    before = d.journal_records()[-1]["seq"]
    d.start()
    wait_served(d, "1")  # restored first: the unjudged candidate is not promoted
    recs = d.journal_records()
    assert not select(recs, step="swap", phase="done", to_version="2")
    with VersionWatch(d, interval=0.02):  # traffic for the canary to judge
        wait_records(d, "v2 promoted", timeout=60, step="swap", phase="done", to_version="2")
    recs = d.journal_records()
    again = select(recs, step="rollout", after_seq=before)
    assert [r["phase"] for r in again] == ["begin", "done"]  # the whole stage, run again
    assert select(recs, step="swap", phase="done", to_version="2")[0]["seq"] > again[-1]["seq"]
    assert d.cli("journal", "--verify").returncode == 0


def test_crash_as_the_gate_fails_restarts_on_the_old_version_with_the_candidate_quarantined(
    daemon, kit: Kit
) -> None:
    d = started(daemon, kit)
    d.stop()
    d.start(env={"HOTSWAP_CRASHPOINT": "rollout:failed"})  # SIGKILL right after the record
    wait_served(d, "1")
    load = LoadGenerator(d, threads=2, max_s=60, bodies=[TRIP_BYTES]).start()
    try:
        kit.write(d.desired, "5", mutate=rollout("canary", [(50, "30s")], min_requests=3))
        d.wait_for(lambda: not d.alive(), 60, "the crash point")
    finally:
        load.stop()
    d.start(resync=0.5)  # passes come often: each one would rerun a forgotten canary
    wait_served(d, "1")
    with VersionWatch(d, interval=0.02) as watch:
        wait_passes(d, 4)  # passes that would rerun the canary if the failure were forgotten
    watch.assert_only("1")
    recs = d.journal_records()
    assert len(select(recs, step="rollout", phase="begin", to_version="5")) == 1
    assert "quarantined" in model_row(d.status())["state"]


def test_crash_between_stages_runs_the_canary_again_from_its_first_stage(daemon, kit: Kit) -> None:
    d = started(daemon, kit)
    d.stop()
    d.start(env={"HOTSWAP_CRASHPOINT": "rollout:done"})  # SIGKILL once stage 1 has passed
    wait_served(d, "1")
    steps = [(50, "1s"), (50, "1s")]
    with VersionWatch(d, interval=0.02):
        kit.write(d.desired, "2", mutate=rollout("canary", steps, min_requests=3))
        d.wait_for(lambda: not d.alive(), 60, "the crash point")
    d.start()
    with VersionWatch(d, interval=0.02):
        wait_records(d, "v2 promoted", timeout=60, step="swap", phase="done", to_version="2")
    stages = [
        (r["phase"], r["detail"].get("stage"))
        for r in select(d.journal_records(), step="rollout", to_version="2")
    ]
    # stage 1 passed before the crash, then both stages again: nothing judged is carried over
    assert stages == [("begin", None), ("done", 1)] * 2 + [("begin", None), ("done", 2)]


def test_rollback_during_a_canary_abandons_it_and_stays_on_the_serving_version(
    daemon, kit: Kit
) -> None:
    d = started(daemon, kit)
    load = LoadGenerator(d, threads=2, max_s=60).start()
    try:
        kit.write(d.desired, "2", mutate=rollout("canary", [(50, "60s")], min_requests=3))
        wait_records(d, "the canary to begin", timeout=60, step="rollout", phase="begin")
        out = d.cli("rollback", "classifier", "--reason", "stop the canary")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "rolled back to v1 (the rollout of v2 is abandoned)" in out.stdout
        wait_records(d, "the candidate dropped", timeout=30, step="revert", phase="done")
        time.sleep(1.0)  # traffic after the canary was abandoned
    finally:
        result = load.stop()
    assert result.failures == []
    row = model_row(d.status())
    assert row["active"]["version"] == "1" and row["candidate"] is None
    assert row["override"] is not None
    assert not select(d.journal_records(), step="swap", phase="done", to_version="2")
    # each client's last answers (the second after the revert) all came from v1
    tails = [thread[-5:] for thread in result.per_thread if thread]
    assert tails and all(v == "1" for tail in tails for _, v in tail)
