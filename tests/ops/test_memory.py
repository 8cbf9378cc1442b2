"""Memory planning: side by side when both fit; the standby goes first; a sequential swap only
for an immediate rollout; never the active version for a candidate that cannot fit at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.core.desired import RolloutSpec, RolloutStage
from reconciler.core.errors import RuntimeFailure
from reconciler.ops.memory import MemoryPlanner, memory_need
from runtime.serving.slot import Repository
from tests.support.clock import FakeClock as Clock
from tests.support.instances import instance
from tests.support.units import plain_spec as spec

ARTIFACT = Path("/nowhere/model.onnxruntime")  # the fake backend estimates without reading it
CANARY = RolloutSpec("canary", steps=(RolloutStage(10, 30.0, "30s"),))


class Backend:
    """Knows what an instance needs; with `free`, also probes the device's free memory."""

    def __init__(self, need: int, free: int | None = None) -> None:
        self.need = need
        if free is not None:
            self.memory_free = lambda: free

    def memory_need(self, artifact: Path) -> int:
        return self.need


def _serving(active: int, standby: int | None = None) -> Repository:
    """v1 serving, and v0 kept warm as the standby when `standby` is its memory."""
    repo = Repository()
    slot = repo.slot("classifier")
    if standby is None:
        slot.activate(instance(spec("1"), memory=active))
        return repo
    slot.activate(instance(spec("0"), memory=standby))
    slot.set_candidate(instance(spec("1"), memory=active))
    slot.promote_candidate(keep_standby=True)
    return repo


def test_the_estimate_is_the_backends_own_or_twice_the_artifact(tmp_path: Path) -> None:
    artifact = tmp_path / "model.onnxruntime"
    artifact.write_bytes(b"x" * 1000)
    assert memory_need(Backend(need=7), artifact) == 7
    assert memory_need(object(), artifact) == 2000


def test_a_candidate_that_fits_beside_both_touches_nothing() -> None:
    repo = _serving(active=40, standby=20)
    planner = MemoryPlanner(repo, budget=100)
    assert planner.resident() == 60
    assert planner.make_room(spec("2"), Backend(need=40), ARTIFACT) is False
    slot = repo.slot("classifier")
    assert slot.active is not None and slot.standby is not None


def test_without_a_budget_or_a_probe_there_is_no_limit() -> None:
    planner = MemoryPlanner(_serving(active=40), budget=None)
    assert planner.make_room(spec("2"), Backend(need=10**12), ARTIFACT) is False


def test_the_standby_is_dropped_first_and_is_enough() -> None:
    repo = _serving(active=40, standby=40)
    standby = repo.slot("classifier").standby
    assert standby is not None
    planner = MemoryPlanner(repo, budget=100)
    assert planner.make_room(spec("2"), Backend(need=50), ARTIFACT) is False
    slot = repo.slot("classifier")
    assert slot.standby is None and standby.session.released == 1
    assert slot.active is not None and slot.active.version == "1"
    assert not planner.in_sequential_swap("classifier")


def test_a_sequential_swap_unloads_the_active_version_and_times_the_window() -> None:
    repo = _serving(active=40, standby=40)
    clock = Clock(100.0)
    planner = MemoryPlanner(repo, budget=100, clock=clock)
    assert planner.make_room(spec("2"), Backend(need=70), ARTIFACT) is True
    slot = repo.slot("classifier")
    assert slot.active is None and slot.standby is None
    assert planner.in_sequential_swap("classifier")
    clock.now += 1.5
    assert planner.end_sequential("classifier") == 1500.0
    assert planner.end_sequential("classifier") is None
    assert not planner.in_sequential_swap("classifier")


def test_a_canary_that_does_not_fit_beside_the_active_version_is_refused() -> None:
    repo = _serving(active=40, standby=40)
    planner = MemoryPlanner(repo, budget=100)
    with pytest.raises(RuntimeFailure) as refused:
        planner.make_room(spec("2", rollout=CANARY), Backend(need=70), ARTIFACT)
    assert refused.value.reason == "rollout-no-room"
    slot = repo.slot("classifier")
    assert slot.active is not None and slot.active.version == "1"  # still serving
    assert slot.standby is None  # the standby went first, as for any candidate
    assert not planner.in_sequential_swap("classifier")


def test_a_candidate_too_big_even_alone_leaves_the_active_version_serving() -> None:
    repo = _serving(active=40)
    planner = MemoryPlanner(repo, budget=100)
    with pytest.raises(RuntimeFailure) as refused:
        planner.make_room(spec("2"), Backend(need=120), ARTIFACT)
    assert refused.value.reason == "memory-budget" and "--memory-budget" in refused.value.message
    assert repo.slot("classifier").active is not None


def test_the_devices_own_free_memory_is_a_limit_too() -> None:
    repo = _serving(active=40)
    planner = MemoryPlanner(repo, budget=1000)
    assert planner.free(Backend(need=1, free=30)) == 30
    assert planner.make_room(spec("2"), Backend(need=60, free=30), ARTIFACT) is True
    assert repo.slot("classifier").active is None
