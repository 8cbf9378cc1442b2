"""The probe: a model's first inferences in a child process, killed past its time or memory."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from runtime.backends.base import BackendError
from runtime.backends.probe import Probe, ProbeLimits
from tests.support.hostile_models import hanging_model, memory_hungry_model
from tests.support.tiny_models import doubling_model

FEEDS = {"x": np.ones((1, 4), np.float32)}
GIB = 1 << 30


def _fails(probe: Probe) -> BackendError:
    with pytest.raises(BackendError) as e:
        probe.run()
    return e.value


def test_a_good_model_passes_and_says_what_it_cost(tmp_path: Path) -> None:
    result = Probe(doubling_model(tmp_path / "m.onnx", "1"), FEEDS, ProbeLimits(60, GIB)).run()
    assert len(result.run_ms) == 1 and result.peak_rss_bytes > 0
    assert 0 < result.took_s < 60


def test_a_hanging_model_is_killed_at_its_deadline(tmp_path: Path) -> None:
    started = time.monotonic()
    error = _fails(Probe(hanging_model(tmp_path / "h.onnx", "2"), FEEDS, ProbeLimits(1.5, GIB)))
    assert error.reason == "probe-timeout" and "1.5 s" in str(error)
    assert time.monotonic() - started < 15


def test_a_memory_hungry_model_is_refused_its_allocation(tmp_path: Path) -> None:
    model = memory_hungry_model(tmp_path / "m.onnx", "2", gib=4)
    error = _fails(Probe(model, FEEDS, ProbeLimits(60, GIB // 2)))
    assert error.reason == "probe-memory" and "0.50 GiB" in str(error)


def test_abandon_kills_the_child_at_once(tmp_path: Path) -> None:
    probe = Probe(hanging_model(tmp_path / "h.onnx", "2"), FEEDS, ProbeLimits(60, GIB))
    threading.Timer(0.5, probe.abandon, args=("desired state moved on",)).start()
    started = time.monotonic()
    error = _fails(probe)
    assert error.reason == "probe-abandoned" and "desired state moved on" in str(error)
    assert time.monotonic() - started < 15


def test_a_child_that_dies_is_a_crash_not_a_verdict_on_the_daemon(tmp_path: Path) -> None:
    not_onnx = tmp_path / "garbage.onnx"
    not_onnx.write_bytes(b"not a model")
    assert _fails(Probe(not_onnx, FEEDS, ProbeLimits(60, GIB))).reason == "load-failed"
    probe = Probe(doubling_model(tmp_path / "m.onnx", "1"), FEEDS, ProbeLimits(60, GIB))
    probe._request["runs"] = "not a number"  # the child raises before it writes a result
    error = _fails(probe)
    assert error.reason == "probe-crashed" and "exit status 1" in str(error)
