"""The control plane hands desired state's `runtime.batching` to the instances it loads: the
instance batches (its own batcher) and a spec that changes only its batching is a new candidate."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.core.desired import BatchingSpec
from tests.support.harness import Device, device


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Device]:
    yield from device(tmp_path)


def test_a_batching_spec_loads_an_instance_that_batches(dev: Device) -> None:
    spec = dataclasses.replace(dev.spec("1"), batching=BatchingSpec(8, 0.001, "1ms", (4,)))
    dev.converge(spec)
    active = dev.repo.slot("m").active
    assert active is not None and active.version == "1"
    assert active.meta["batching"] == {
        "max_batch_size": 8,
        "max_queue_delay_s": 0.001,
        "preferred_sizes": [4],
    }
    assert active.batcher is not None and active.batcher.policy.max_batch_size == 8


def test_without_batching_the_instance_does_not_batch(dev: Device) -> None:
    dev.converge(dev.spec("1"))
    active = dev.repo.slot("m").active
    assert active is not None and "batching" not in active.meta and active.batcher is None


def test_turning_batching_on_rolls_out_the_same_version_with_it(dev: Device) -> None:
    plain = dev.spec("1")
    dev.converge(plain)
    dev.converge(dataclasses.replace(plain, batching=BatchingSpec(4)))
    active = dev.repo.slot("m").active
    assert active is not None and active.batcher is not None
