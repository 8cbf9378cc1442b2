"""A new model's first run is probed in a child, once per deployment, and abandoned when it is
no longer wanted: in process (tests/support/harness.py) with the real ONNX Runtime backend."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from reconciler.core.desired import ModelSpec, RetentionSpec
from reconciler.core.errors import RuntimeFailure, TransientError
from reconciler.core.outcome import Failed
from reconciler.core.reasons import STOPPING, SUPERSEDED
from reconciler.ops.backends import Backends
from reconciler.ops.probe import MEMORY_FLOOR, Prober, ProbeSettings, default_memory
from reconciler.state.records import Entry, WarmDone
from runtime.backends.onnxruntime import OnnxRuntimeBackend
from tests.support.harness import Device
from tests.support.hostile_models import hanging_model, publish_hostile
from tests.support.tiny_models import TinyRegistry

NO_STANDBY = RetentionSpec(keep_standby=False)


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Device]:
    backends = Backends({"onnxruntime": OnnxRuntimeBackend()}, {"onnxruntime": ort.__version__})
    d = Device(
        tmp_path, TinyRegistry.create(tmp_path / "publisher"), backends=backends,
        probe=ProbeSettings(timeout_s=30.0),
    )  # fmt: skip
    yield d
    d.close()


def _spec(dev: Device, version: str, hostile: str | None = None) -> ModelSpec:
    if hostile is not None:
        publish_hostile(dev.registry, "m", version, hostile)
    return dev.spec(version, backend="onnxruntime", retention=NO_STANDBY)


def _probes(dev: Device) -> list[dict[str, Any]]:
    bodies = [Entry.of(r).body for r in dev.records(step="warm", phase="done")]
    return [dict(b.probe or {}) for b in bodies if isinstance(b, WarmDone)]


def test_a_deployment_is_probed_once_then_trusted(dev: Device) -> None:
    v1, v2 = _spec(dev, "1"), _spec(dev, "2")
    dev.converge(v1)
    dev.converge(v2)
    dev.converge(v1)  # no standby kept: v1 is loaded and warmed again, but not probed again
    first, second, again = _probes(dev)
    assert first["took_s"] > 0 and first["limits"]["timeout_s"] == 30.0 and second["took_s"] > 0
    assert again == {"passed_at_seq": dev.records(step="warm", phase="done")[0].seq}
    assert dev.serving() == "1"


def test_a_hanging_candidate_is_quarantined_and_the_active_version_serves(dev: Device) -> None:
    dev.converge(_spec(dev, "1"))
    hanging = _spec(dev, "2", "hang")
    dev.ops.prober.settings = ProbeSettings(timeout_s=1.0)
    (outcome,) = dev.converge(hanging)
    assert isinstance(outcome, Failed) and outcome.reason == "probe-timeout"
    assert dev.quarantine.snapshot().digests == {"m": hanging.digest}
    assert dev.serving() == "1"


def test_a_probe_no_longer_wanted_is_abandoned_not_quarantined(dev: Device) -> None:
    dev.converge(_spec(dev, "1"))
    hanging, fixed = _spec(dev, "2", "hang"), _spec(dev, "3")
    outcomes: list[Any] = []
    worker = threading.Thread(target=lambda: outcomes.extend(dev.converge(hanging, max_passes=1)))
    worker.start()
    while worker.is_alive() and not dev.ops.abandon_unwanted({"m": fixed.digest}):
        worker.join(0.02)  # until the probe has started and is abandoned
    worker.join(30)
    assert [o.reason for o in outcomes] == [SUPERSEDED]
    assert dev.quarantine.snapshot().digests == {}
    dev.converge(fixed)
    assert dev.serving() == "3"


def test_the_default_memory_limit_grows_with_the_model_and_its_inputs() -> None:
    assert default_memory(0, 0) == MEMORY_FLOOR
    assert default_memory(100 << 20, 1 << 20) == MEMORY_FLOOR + (400 << 20) + (64 << 20)


def _hanging_session(tmp_path: Path) -> Any:
    return OnnxRuntimeBackend().load(hanging_model(tmp_path / "hang.onnx", "2"))


def test_runs_in_the_serving_process_are_cut_off_past_the_limit(
    dev: Device, tmp_path: Path
) -> None:
    prober = Prober(dev.journal, ProbeSettings(timeout_s=0.5))
    session, spec = _hanging_session(tmp_path), _spec(dev, "2")
    with pytest.raises(RuntimeFailure) as e, prober.bounded(spec, session, "warm-up"):
        session.infer({"x": np.ones((1, 4), np.float32)})
    assert e.value.reason == "warmup-timeout" and "0.5 s" in e.value.message


def test_stopping_ends_runs_in_the_serving_process(dev: Device, tmp_path: Path) -> None:
    prober = Prober(dev.journal, ProbeSettings(timeout_s=60))
    session, spec = _hanging_session(tmp_path), _spec(dev, "2")
    threading.Timer(0.3, prober.stop).start()
    with pytest.raises(TransientError) as e, prober.bounded(spec, session, "health-check"):
        session.infer({"x": np.ones((1, 4), np.float32)})
    assert e.value.reason == STOPPING
