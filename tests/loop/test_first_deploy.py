"""A fresh device serves its first version whatever the rollout strategy: with nothing serving
there is nothing to compare a canary or shadow with, so the candidate is deployed after its
health check and the swap record says the rollout was skipped and why. Once a version serves,
the next one goes through its stages as before."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.core.desired import Gates, ModelSpec, RolloutSpec, RolloutStage
from reconciler.core.names import Phase, StepName
from reconciler.state import records
from tests.support.harness import Device, device

ROLLOUTS = {
    "immediate": RolloutSpec("immediate"),
    "canary": RolloutSpec(
        "canary", steps=(RolloutStage(50, 5.0, "5s"),), gates=Gates(min_requests=10)
    ),
    "shadow": RolloutSpec(
        "shadow", steps=(RolloutStage(100, 5.0, "5s"),), gates=Gates(min_requests=10)
    ),
}


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Device]:
    yield from device(tmp_path)


def _spec(dev: Device, version: str, strategy: str) -> ModelSpec:
    return dev.spec(version, rollout=ROLLOUTS[strategy])


def _swap_done(dev: Device) -> records.SwapDone:
    [swap] = [r for r in dev.records(step=StepName.SWAP, phase=Phase.DONE)][-1:]
    body = records.parse(swap)
    assert isinstance(body, records.SwapDone)
    return body


@pytest.mark.parametrize("strategy", sorted(ROLLOUTS))
def test_a_first_deploy_serves_under_every_strategy(dev: Device, strategy: str) -> None:
    dev.converge(_spec(dev, "1", strategy))
    assert dev.serving() == "1"
    assert dev.records(step=StepName.ROLLOUT) == []  # no stage was started
    swap = _swap_done(dev)
    assert swap.promoted == "1" and swap.previous is None
    if strategy == "immediate":
        assert swap.rollout_skipped is None
    else:
        assert swap.rollout_skipped is not None
        assert f"no version to compare a {strategy} with" in swap.rollout_skipped
        # the health check ran before the swap, as for any candidate
        assert [r.phase for r in dev.records(step=StepName.HEALTH_CHECK)] == ["begin", "done"]


@pytest.mark.parametrize("strategy", ["canary", "shadow"])
def test_the_next_version_runs_its_stages_beside_the_first(dev: Device, strategy: str) -> None:
    dev.converge(_spec(dev, "1", strategy))
    # canary traffic is counted here; a shadow's mirrored copies are not, so it keeps waiting
    dev.converge(_spec(dev, "2", strategy), each_pass=lambda: dev.traffic(20))
    assert dev.records(step=StepName.ROLLOUT, phase=Phase.BEGIN) != []
    if strategy == "canary":
        assert dev.serving() == "2"
        assert _swap_done(dev).rollout_skipped is None
    else:
        assert dev.serving() == "1"  # never swapped unjudged


def test_a_skipped_rollout_reads_back_and_older_swap_records_still_read(dev: Device) -> None:
    swap = records.SwapDone("1", None, "k", _spec(dev, "1", "canary"), rollout_skipped="why")
    detail = swap.to_detail()
    assert records.SwapDone.from_detail(detail).rollout_skipped == "why"
    del detail["rollout_skipped"]  # as a release before this field wrote it
    assert records.SwapDone.from_detail(detail).rollout_skipped is None
