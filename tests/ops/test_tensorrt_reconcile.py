"""The control plane drives the TensorRT backend like any other: fetch, verify, build (an engine,
in a child process), warm, health-check against golden outputs, swap; a new GPU means a rebuild.
Runs against the fake `tensorrt` module (its engine computes y = 2x), no GPU needed."""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reconciler.core.desired import Desired, HealthSpec, ModelSpec, ShapeRange, TensorSpec
from reconciler.core.outcome import Done, Failed
from reconciler.core.plan import plan
from reconciler.loop.executor import Executor
from reconciler.ops.backends import Backends
from reconciler.ops.context import Operations
from reconciler.state.journal import Journal
from reconciler.trust.policy import TrustPolicy
from runtime.serving.slot import Repository
from tests.support import fake_tensorrt
from tests.support.fake_tensorrt import FakeDeviceMemory
from tests.support.trt_models import DEVICE, backend, make_model


@pytest.fixture
def fake_trt(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The fake TensorRT, here and in the spawned build child (which reads the env)."""

    def install(version: str = "10.3.0", behaviour: str = "") -> None:
        monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt.make(version, behaviour))
        monkeypatch.setenv("HOTSWAP_FAKE_TRT_VERSION", version)
        monkeypatch.setenv("HOTSWAP_FAKE_TRT_BEHAVIOUR", behaviour)

    return install


def _spec(tmp_path: Path) -> ModelSpec:
    model = make_model(tmp_path / "double.onnx")
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    golden = tmp_path / "golden.npz"
    np.savez(golden, x=x, y=2 * x)
    return ModelSpec(
        name="doubler",
        version="1",
        source=str(model),
        sha256=hashlib.sha256(model.read_bytes()).hexdigest(),
        backend="tensorrt",
        shapes=(("x", ShapeRange((1, 4), (4, 4), (8, 4))),),
        inputs=(TensorSpec("x", "FP32", (-1, 4)),),
        outputs=(TensorSpec("y", "FP32", (-1, 4)),),
        health=HealthSpec(warmup_iterations=2, golden=str(golden), atol=1e-6),
    )


def _context(tmp_path: Path, be: Any, **shared: Any) -> Operations:
    return Operations(
        tmp_path / "state",
        Journal(tmp_path / "state" / "journal.db"),
        Repository(),
        policy=TrustPolicy(keys={}, allow_unsigned=True),  # the point here is the backend
        backends=Backends({"tensorrt": be}, identities={"tensorrt": be.cache_identity}),
        **shared,
    )


def test_reconcile_deploys_a_tensorrt_engine_and_rebuilds_for_another_gpu(
    fake_trt: Any, tmp_path: Path
) -> None:
    fake_trt("10.3.0")
    spec = _spec(tmp_path)
    be = backend(FakeDeviceMemory(), trt_module="tests.support.fake_tensorrt")
    ctx = _context(tmp_path, be)
    steps = plan(Desired(models={"doubler": spec}), ctx.observe())
    assert [s.name for s in steps] == [
        "fetch",
        "verify",
        "build",
        "warm",
        "health-check",
        "swap",
        "retire",
    ]
    outcome = Executor(ctx).run("doubler", steps, spec, None)
    assert isinstance(outcome, Done), outcome
    slot = ctx.repo.slot("doubler")
    assert slot.active is not None and slot.active.meta["platform"] == "tensorrt_plan"
    x = np.ones((3, 4), np.float32)
    with slot.acquire() as inst:
        np.testing.assert_array_equal(inst.session.infer({"x": x})["y"], 2 * x)
    assert plan(Desired(models={"doubler": spec}), ctx.observe()) == []

    # the same state on another GPU: the cached engine is not reused, a rebuild is planned
    other = backend(
        FakeDeviceMemory(),
        device=dataclasses.replace(DEVICE, gpu_name="NVIDIA H100", compute_capability="9.0"),
        trt_module="tests.support.fake_tensorrt",
    )
    moved = _context(tmp_path / "moved", other, store=ctx.store, artifacts=ctx.artifacts)
    names = [s.name for s in plan(Desired(models={"doubler": spec}), moved.observe())]
    assert "build" in names and "fetch" not in names


def test_a_failed_engine_build_leaves_the_serving_version(fake_trt: Any, tmp_path: Path) -> None:
    fake_trt("10.3.0", "crash")
    spec = _spec(tmp_path)
    ctx = _context(tmp_path, backend(FakeDeviceMemory(), trt_module="tests.support.fake_tensorrt"))
    outcome = Executor(ctx).run(
        "doubler", plan(Desired(models={"doubler": spec}), ctx.observe()), spec, None
    )
    assert isinstance(outcome, Failed) and outcome.reason == "build-crashed"
    assert ctx.repo.slot("doubler").active is None
    assert not any(p.name.endswith(".hotswap-tmp") for p in (tmp_path / "state").rglob("*"))
