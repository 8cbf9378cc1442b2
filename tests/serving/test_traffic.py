"""The rollout traffic split: deterministic routing, per-arm figures, output comparison, and
the slot's canary routing, shadow mirroring and revert timing."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from runtime.serving.mirror import Mirror
from runtime.serving.slot import Instance, ModelSlot
from runtime.serving.traffic import Split, compare_outputs


class Session:
    inputs = ()
    outputs = ()

    def __init__(self, out: dict[str, np.ndarray] | None = None, fail: bool = False) -> None:
        self.out = out or {"y": np.zeros((1, 3), np.float32)}
        self.fail = fail
        self.calls = 0
        self.releases = 0

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.releases == 0, "used after release"
        self.calls += 1
        if self.fail:
            raise RuntimeError("candidate broke")
        return self.out

    def release(self) -> None:
        self.releases += 1


def slot_with(
    active_out=None, cand_out=None, cand_fail=False
) -> tuple[ModelSlot, Instance, Instance]:
    slot = ModelSlot("m")
    active = Instance("m", "1", Session(active_out))
    cand = Instance("m", "2", Session(cand_out, fail=cand_fail))
    slot.activate(active)
    slot.set_candidate(cand)
    return slot, active, cand


def served_by(slot: ModelSlot, n: int, ids: list[str] | None = None) -> list[str]:
    out = []
    for i in range(n):
        with slot.acquire(ids[i] if ids else None) as inst:
            out.append(inst.version)
    return out


@pytest.mark.parametrize("weight", [1, 10, 33.3, 50, 90])
def test_requests_without_id_split_within_a_few_requests_of_the_weight(weight: float) -> None:
    split = Split("canary", 0, weight, "d", compare=False)
    chosen = 0
    for k in range(1, 20001):
        chosen += split.chooses(None)
        assert abs(chosen - k * weight / 100) <= 5, (k, chosen)


def test_request_ids_route_by_hash_the_same_way_every_time_within_a_stage() -> None:
    ids = [f"req-{i}" for i in range(4000)]
    a = Split("canary", 0, 20, "digest", compare=False)
    b = Split("canary", 0, 20, "digest", compare=False)
    first = [a.chooses(i) for i in ids]
    assert first == [b.chooses(i) for i in ids] == [a.chooses(i) for i in ids]
    assert 0.17 < sum(first) / len(ids) < 0.23
    # the next stage (or another candidate) draws afresh, so one unlucky id is not always the guinea pig
    other = Split("canary", 1, 20, "digest", compare=False)
    assert [other.chooses(i) for i in ids] != first


def test_canary_sends_its_share_to_the_candidate_and_counts_each_arm() -> None:
    slot, active, cand = slot_with()
    split = Split("canary", 0, 25, "d", compare=False)
    slot.start_split(split)
    versions = served_by(slot, 400)
    assert versions.count("2") == 100
    for v in versions:
        slot.record(cand if v == "2" else active, ok=True, seconds=0.001)
    fig = split.snapshot()
    assert fig["candidate"]["requests"] == 100 and fig["active"]["requests"] == 300
    assert fig["candidate"]["p99_ms"] == pytest.approx(1.0)


def test_ending_the_split_sends_every_request_back_and_times_the_revert() -> None:
    slot, _active, _cand = slot_with()
    timings: list[float] = []
    slot.on_revert_served = timings.append
    slot.start_split(Split("canary", 0, 100, "d", compare=False))
    assert set(served_by(slot, 10)) == {"2"}
    slot.end_split(decided_at=time.perf_counter())
    assert set(served_by(slot, 50)) == {"1"}
    assert len(timings) == 1 and 0 <= timings[0] < 0.05  # measured once, by the first request


def test_dropping_or_promoting_the_candidate_ends_the_split() -> None:
    slot, _, _ = slot_with()
    slot.start_split(Split("canary", 0, 50, "d", compare=False))
    slot.drop_candidate()
    assert slot.split is None and set(served_by(slot, 20)) == {"1"}
    slot, _, _ = slot_with()
    slot.start_split(Split("canary", 0, 50, "d", compare=False))
    slot.promote_candidate(keep_standby=True)
    assert slot.split is None and set(served_by(slot, 20)) == {"2"}


def test_candidate_errors_wake_the_judge() -> None:
    split = Split("canary", 0, 10, "d", compare=False)
    woken = []
    split.on_candidate_error = lambda: woken.append(1)
    split.record(True, True, 0.001)
    split.record(False, False, 0.001)  # the active version failing is not the candidate's fault
    assert woken == []
    split.record(True, False, 0.001)
    assert woken == [1]


def test_compare_outputs_divergence_and_top1() -> None:
    a = {"y": np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]], np.float32)}
    same = compare_outputs(a, a)
    assert same == (0.0, 2, 2)
    b = {"y": np.array([[0.1, 0.8, 0.0], [0.1, 0.8, 0.1]], np.float32)}
    div, rows, agree = compare_outputs(b, a)
    assert div == pytest.approx(0.7) and (rows, agree) == (2, 1)
    nan = {"y": np.array([[np.nan, 0, 0], [0, 0, 0]], np.float32)}
    assert compare_outputs(nan, a)[0] == math.inf
    assert compare_outputs({"z": a["y"]}, a)[0] == math.inf  # a missing output never compares
    assert compare_outputs({"y": a["y"][:1]}, a)[0] == math.inf


def wait_until(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_shadow_answers_from_active_and_compares_the_mirrored_candidate() -> None:
    good = {"y": np.array([[0.0, 1.0, 0.0]], np.float32)}
    off = {"y": np.array([[1.0, 0.0, 0.0]], np.float32)}
    slot, active, cand = slot_with(active_out=good, cand_out=off)
    split = Split("shadow", 0, 100, "d", compare=False)
    slot.start_split(split)
    mirror = Mirror(workers=1, backlog=100)
    for _ in range(20):
        with slot.acquire() as inst:
            assert inst is active
            out = inst.session.infer({})
            slot.record(inst, True, 0.001)
            mirror.offer(slot, inst, None, {}, out)
    wait_until(lambda: split.snapshot()["comparison"]["compared"] == 20)
    fig = split.snapshot()
    assert fig["active"]["requests"] == 20 and fig["candidate"]["requests"] == 20
    assert fig["comparison"]["max_divergence"] == pytest.approx(1.0)
    assert fig["comparison"]["top1_agreement"] == 0.0
    assert cand.in_flight == 0  # every mirror let go of the candidate
    mirror.shutdown()


def test_a_full_mirror_backlog_drops_rather_than_queues() -> None:
    slot, _active, cand = slot_with()
    gate = threading.Event()
    cand.session.infer = lambda feeds: (gate.wait(5), {"y": np.zeros((1, 3), np.float32)})[1]  # type: ignore[method-assign]
    split = Split("shadow", 0, 100, "d", compare=False)
    slot.start_split(split)
    mirror = Mirror(workers=1, backlog=2)
    for _ in range(10):
        with slot.acquire() as inst:
            mirror.offer(slot, inst, None, {}, {"y": np.zeros((1, 3), np.float32)})
    assert split.snapshot()["comparison"]["dropped"] == 8
    gate.set()
    wait_until(lambda: cand.in_flight == 0)
    mirror.shutdown()


def test_a_mirrored_candidate_that_fails_counts_as_its_error() -> None:
    slot, _active, _cand = slot_with(cand_fail=True)
    split = Split("shadow", 0, 100, "d", compare=False)
    slot.start_split(split)
    mirror = Mirror(workers=1, backlog=100)
    for _ in range(5):
        with slot.acquire() as inst:
            mirror.offer(slot, inst, None, {}, inst.session.infer({}))
    wait_until(lambda: split.snapshot()["candidate"]["requests"] == 5)
    assert split.snapshot()["candidate"]["errors"] == 5
    mirror.shutdown()


def test_a_comparing_canary_runs_the_active_version_on_the_candidates_requests() -> None:
    slot, active, _cand = slot_with()
    split = Split("canary", 0, 50, "d", compare=True)
    slot.start_split(split)
    mirror = Mirror(workers=1, backlog=100)
    for _ in range(10):
        with slot.acquire() as inst:
            mirror.offer(slot, inst, None, {}, inst.session.infer({}))
    wait_until(lambda: split.snapshot()["comparison"]["compared"] == 5)
    assert active.session.calls == 10  # 5 served + 5 mirrored for comparison
    mirror.shutdown()


def test_error_budget_stops_the_canary_at_the_failing_request() -> None:
    slot, _active, cand = slot_with()
    timings: list[float] = []
    slot.on_revert_served = timings.append
    split = Split("canary", 0, 100, "d", compare=False, error_budget=(0.1, 10))
    slot.start_split(split)
    for i in range(9):  # 9 requests, 1 failed: under min_requests, nothing tripped yet
        with slot.acquire() as inst:
            assert inst is cand
            slot.record(inst, ok=i != 0, seconds=0.001)
    with slot.acquire() as inst:
        slot.record(inst, ok=False, seconds=0.001)  # 2 of 10 > 10%: out of budget
    assert split.tripped
    assert set(served_by(slot, 5)) == {"1"}  # the split is still there, sending nothing
    assert slot.split is split and len(timings) == 1
    slot.record(cand, ok=True, seconds=0.001)  # a straggler finishing on the candidate
    assert split.snapshot()["candidate"] == {"requests": 10, "errors": 2, "p99_ms": 1.0}
    slot.end_split(decided_at=time.perf_counter())
    served_by(slot, 3)
    assert len(timings) == 1  # the revert was timed once, at the first request sent back
