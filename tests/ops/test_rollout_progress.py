"""Rollout progress is control-plane state: observed as `stages_passed`, required by the swap,
and gone with the candidate (promoted, dropped, unloaded) — a new candidate starts from zero."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.core.desired import Gates, RolloutSpec, RolloutStage
from reconciler.core.errors import RuntimeFailure
from reconciler.core.steps import Wait
from reconciler.ops.backends import Backends
from reconciler.ops.context import Operations
from reconciler.ops.rollout import RolloutProgress
from reconciler.state.journal import Journal
from runtime.serving.slot import Repository
from tests.support.clock import FakeClock as Clock
from tests.support.instances import instance
from tests.support.units import plain_spec as spec

CANARY = RolloutSpec("canary", steps=(RolloutStage(50, 10.0, "10s"),), gates=Gates(min_requests=4))
V1, V2 = spec("1"), spec("2", rollout=CANARY)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ops(tmp_path: Path, clock: Clock) -> Iterator[Operations]:
    journal = Journal(tmp_path / "journal.db")
    ops = Operations(
        tmp_path / "state", journal, Repository(), clock=clock, backends=Backends(identities={})
    )
    slot = ops.repo.slot("classifier")
    slot.activate(instance(V1))
    slot.set_candidate(instance(V2))  # warmed and health-checked
    yield ops
    ops.shutdown()
    journal.close()


def _candidate_stages(ops: Operations) -> int | None:
    cand = ops.observe().model("classifier").candidate
    return None if cand is None else cand.stages_passed


def _serve(ops: Operations, ok: bool = True, n: int = 5) -> None:
    slot = ops.repo.slot("classifier")
    assert slot.candidate is not None and slot.active is not None
    for _ in range(n):
        slot.record(slot.candidate, ok, 0.001)
        slot.record(slot.active, True, 0.001)


def _pass_stage(ops: Operations, clock: Clock) -> None:
    assert isinstance(ops.rollout(V2, 0), Wait)  # the stage starts
    _serve(ops)
    clock.now += 11
    passed = ops.rollout(V2, 0)
    assert isinstance(passed, dict) and passed["stage"] == 1


def test_a_passed_stage_is_observed_and_shown_in_status(ops: Operations, clock: Clock) -> None:
    assert _candidate_stages(ops) == 0
    _pass_stage(ops, clock)
    assert _candidate_stages(ops) == 1
    assert ops.describe()["classifier"]["candidate"]["stages_passed"] == 1
    assert "stages_passed" not in ops.repo.slot("classifier").candidate.meta


def test_the_swap_refuses_an_unjudged_candidate(ops: Operations) -> None:
    with pytest.raises(RuntimeFailure) as refused:
        ops.swap(V2)
    assert refused.value.reason == "rollout-unjudged"
    assert ops.repo.slot("classifier").active.version == "1"


def test_progress_is_cleared_when_the_candidate_is_promoted(ops: Operations, clock: Clock) -> None:
    _pass_stage(ops, clock)
    assert ops.swap(V2).promoted == "2"  # type: ignore[union-attr]
    ops.repo.slot("classifier").set_candidate(instance(V2))  # the same digest, loaded anew
    assert _candidate_stages(ops) == 0
    with pytest.raises(RuntimeFailure):
        ops.swap(V2)


def test_progress_is_cleared_when_the_candidate_is_dropped(ops: Operations, clock: Clock) -> None:
    _pass_stage(ops, clock)
    assert ops.revert("classifier", "candidate no longer desired")["dropped"] == "2"
    assert _candidate_stages(ops) is None
    ops.repo.slot("classifier").set_candidate(instance(V2))
    assert _candidate_stages(ops) == 0


def test_progress_is_cleared_when_the_model_is_unloaded(ops: Operations, clock: Clock) -> None:
    _pass_stage(ops, clock)
    ops.unload("classifier")
    ops.repo.slot("classifier").set_candidate(instance(V2))
    assert _candidate_stages(ops) == 0


def test_a_failed_gate_sends_traffic_back_and_records_no_progress(
    ops: Operations, clock: Clock
) -> None:
    assert isinstance(ops.rollout(V2, 0), Wait)
    _serve(ops, ok=False)
    with pytest.raises(RuntimeFailure) as failed:
        ops.rollout(V2, 0)
    assert failed.value.reason == "rollout-gate"
    assert failed.value.detail["figures"]["candidate"]["errors"] >= 4
    assert ops.repo.slot("classifier").split is None
    assert _candidate_stages(ops) == 0


def test_progress_belongs_to_one_candidate_digest() -> None:
    progress = RolloutProgress()
    progress.record("classifier", V2.digest, 2)
    assert progress.passed("classifier", V2.digest) == 2
    assert progress.passed("classifier", spec("3").digest) == 0
    assert progress.passed("detector", V2.digest) == 0
    progress.clear("classifier")
    assert progress.passed("classifier", V2.digest) == 0
