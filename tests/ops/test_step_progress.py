"""Long steps report their progress into the status snapshot: bytes, rate and ETA for a download,
the TensorRT builder's phases for a build (from its progress monitor, through the fake TensorRT),
runs for a warm-up; throttled to two status writes a second; readable by older and newer readers."""

from __future__ import annotations

import hashlib
import itertools
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reconciler.core.desired import Desired, HealthSpec, ModelSpec, ShapeRange, TensorSpec
from reconciler.core.outcome import Done
from reconciler.core.plan import plan
from reconciler.loop.executor import Executor
from reconciler.ops import progress as progress_mod
from reconciler.ops.backends import Backends
from reconciler.ops.context import Operations
from reconciler.ops.progress import StepProgress, build_progress
from reconciler.state.journal import Journal
from reconciler.state.progress_record import StepProgressRecord
from reconciler.state.summary import status_line
from reconciler.trust.policy import TrustPolicy
from runtime.serving.slot import Repository
from tests.support import fake_tensorrt
from tests.support.clock import FakeClock
from tests.support.fake_tensorrt import FakeDeviceMemory
from tests.support.trt_models import backend, make_model


def test_a_download_has_rate_and_eta_and_writes_are_throttled() -> None:
    clock, writes = FakeClock(), []
    steps = StepProgress(lambda: writes.append(clock()), clock)
    with steps.step("m", "fetch", unit="bytes"):
        for i in range(1, 11):  # 1 MB every 0.1 s for a second: 10 MB/s
            clock.advance(0.1)
            steps.report("m", i << 20, 20 << 20)
        record = steps.snapshot()["m"]
    assert record.step == "fetch" and record.done == 10 << 20 and record.total == 20 << 20
    assert record.rate is not None and abs(record.rate - (10 << 20)) < (1 << 20)
    assert record.eta_s is not None and 0.8 < record.eta_s < 1.2
    assert record.elapsed_s == pytest.approx(1.0) and record.fraction == 0.5
    assert len(writes) <= 3 and all(b - a >= 0.5 for a, b in itertools.pairwise(writes))
    assert steps.snapshot() == {}  # the step is over


def test_a_report_held_back_by_the_throttle_is_written_soon_after() -> None:
    """A download that stalls right after a report still shows how far it got."""
    written: list[int | None] = []
    steps = StepProgress(lambda: written.append(steps.snapshot()["m"].done))
    with steps.step("m", "fetch", unit="bytes"):  # the step's start is written at once
        steps.report("m", 40, 100)  # within 0.5 s of that: held back, then written
        deadline = time.monotonic() + 10
        while len(written) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert written == [None, 40]


def test_a_nested_step_gives_the_outer_one_back_and_reports_follow_the_thread() -> None:
    steps = StepProgress()
    with steps.step("m", "build", unit="steps"):
        with steps.step("m", "verify"):
            assert steps.snapshot()["m"].step == "verify"
        build_progress("Building engine", 1, 2)
        other = threading.Thread(target=build_progress, args=("elsewhere", 9, 9))
        other.start()
        other.join()  # another thread has no step open: its report goes nowhere
        record = steps.snapshot()["m"]
    assert (record.step, record.phase, record.done, record.total) == (
        "build",
        "Building engine",
        1,
        2,
    )


def test_records_read_across_releases() -> None:
    newer = {"step": "build", "phase": "p", "done": 1, "total": 4, "schema": 9, "future": [1]}
    record = StepProgressRecord.from_json(newer)
    assert record is not None and record.fraction == 0.25 and record.schema == 9
    assert StepProgressRecord.from_json({"step": "fetch"}) == StepProgressRecord("fetch")
    assert StepProgressRecord.from_json({"done": 3}) is None
    assert StepProgressRecord.from_json(None) is None
    # a 0.1.0 snapshot (no progress, no rollout stages) still gives a summary line
    old = {"ready": True, "models": {"m": {"active": {"version": "1"}, "fetch": None}}}
    assert status_line(old) == "m v1; ready"


def _spec(tmp_path: Path) -> ModelSpec:
    model = make_model(tmp_path / "double.onnx")
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.savez(tmp_path / "golden.npz", x=x, y=2 * x)
    return ModelSpec(
        name="doubler",
        version="1",
        source=str(model),
        sha256=hashlib.sha256(model.read_bytes()).hexdigest(),
        backend="tensorrt",
        shapes=(("x", ShapeRange((1, 4), (4, 4), (8, 4))),),
        inputs=(TensorSpec("x", "FP32", (-1, 4)),),
        outputs=(TensorSpec("y", "FP32", (-1, 4)),),
        health=HealthSpec(warmup_iterations=3, golden=str(tmp_path / "golden.npz"), atol=1e-6),
    )


def test_the_tensorrt_build_monitor_and_the_warm_up_feed_the_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt.make("10.3.0", ""))
    monkeypatch.setenv("HOTSWAP_FAKE_TRT_VERSION", "10.3.0")
    monkeypatch.setattr(progress_mod, "WRITE_EVERY_S", 0.0)  # every report, to see them all
    spec = _spec(tmp_path)
    be = backend(
        FakeDeviceMemory(), trt_module="tests.support.fake_tensorrt", progress=build_progress
    )
    seen: list[dict[str, Any]] = []
    ctx = Operations(
        tmp_path / "state",
        Journal(tmp_path / "state" / "journal.db"),
        Repository(),
        policy=TrustPolicy(keys={}, allow_unsigned=True),
        backends=Backends({"tensorrt": be}, identities={"tensorrt": be.cache_identity}),
        on_progress=lambda: seen.append(ctx.step_progress().get("doubler", {})),
    )
    steps = plan(Desired(models={"doubler": spec}), ctx.observe())
    assert isinstance(Executor(ctx).run("doubler", steps, spec, None), Done)
    ctx.shutdown()
    built = [s for s in seen if s.get("step") == "build" and s.get("phase")]
    assert [(s["phase"], s["done"], s["total"]) for s in built][-1] == ("Building engine", 2, 2)
    assert any(s.get("step") == "fetch" for s in seen)
    assert any(s.get("step") == "verify" for s in seen)
    warm = [(s["done"], s["total"]) for s in seen if s.get("step") == "warm" and s.get("done")]
    assert warm == [(1, 3), (2, 3), (3, 3)]
    assert ctx.step_progress() == {}
