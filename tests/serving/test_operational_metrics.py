"""What /metrics shows about the process itself and the control plane: process RSS, CPU and
open fds, the running release, and the reconcile loop's last pass (a stuck loop stops moving
it); queue wait and compute apart, for every request."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prometheus_client import generate_latest

from reconciler.loop.controller import Controller
from reconciler.ops.backends import Backends
from reconciler.state.journal import Journal
from runtime.serving.metrics import Metrics
from runtime.serving.server import inference_service
from runtime.serving.slot import Instance, Repository
from tests.support.clock import FakeClock
from tests.support.fake_backend import FakeBackend
from tests.support.grpc_serving import DoublingSession
from tests.support.tiny_models import TinyRegistry


def test_process_metrics_are_on_the_daemons_registry() -> None:
    metrics = Metrics()
    rss = metrics.registry.get_sample_value("process_resident_memory_bytes")
    assert rss is not None and rss > 1_000_000  # a Python process holds megabytes
    cpu = metrics.registry.get_sample_value("process_cpu_seconds_total")
    assert cpu is not None and cpu > 0
    fds = metrics.registry.get_sample_value("process_open_fds")
    assert fds is not None and fds >= 3  # stdin, stdout, stderr at least


def test_build_info_names_the_release_once() -> None:
    metrics = Metrics()
    metrics.set_build("0.1.0")
    metrics.set_build("0.2.0")  # set again: one series, the running release
    text = generate_latest(metrics.registry).decode()
    assert 'hotswap_build_info{version="0.2.0"} 1.0' in text
    assert 'version="0.1.0"' not in text


@dataclass
class _Feeds:
    feeds: dict[str, np.ndarray]


def test_every_request_reports_its_queue_wait_apart_from_compute() -> None:
    repo = Repository()
    repo.slot("m").activate(Instance("m", "1", DoublingSession(), {}, healthy=True))
    service = inference_service(repo, lambda: True, "9.9", workers=1)
    arrived = time.perf_counter() - 0.05  # it waited 50 ms for a worker thread
    x = np.ones((1, 4), np.float32)
    service.execute("m", None, None, lambda i: _Feeds({"x": x}), lambda i, d, o: o, arrived)
    registry, labels = service.metrics.registry, {"model": "m", "version": "1"}
    queue = registry.get_sample_value("hotswap_inference_queue_seconds_sum", labels)
    compute = registry.get_sample_value("hotswap_inference_compute_seconds_sum", labels)
    assert queue is not None and queue >= 0.05
    assert compute is not None and 0 < compute < queue
    assert registry.get_sample_value("hotswap_inference_batch_size_sum", labels) == 1
    service.pool.shutdown(wait=False)
    service.batch_pool.shutdown(wait=False)


def test_the_reconcile_loop_stamps_each_pass(tmp_path: Path) -> None:
    registry = TinyRegistry.create(tmp_path / "publisher")
    state, desired = tmp_path / "state", tmp_path / "desired"
    (state / "trust").mkdir(parents=True)
    desired.mkdir()
    shutil.copyfile(registry.public_key, state / "trust" / "publisher.pub")
    backend, metrics = FakeBackend(), Metrics()
    journal = Journal(state / "journal.db")
    controller = Controller(
        desired,
        state,
        journal,
        Repository(),
        resync_s=3600,
        metrics=metrics,
        backends=Backends({"onnxruntime": backend}, {"onnxruntime": backend.cache_identity}),
        clock=FakeClock(),
    )
    try:
        controller.recover()
        name = "hotswap_reconcile_last_pass_timestamp_seconds"
        assert metrics.registry.get_sample_value(name) == 0  # no pass yet: visibly never
        before = time.time()
        controller.reconcile_once()
        first = metrics.registry.get_sample_value(name)
        assert first is not None and before <= first <= time.time()
        controller.reconcile_once()
        second = metrics.registry.get_sample_value(name)
        assert second is not None and second >= first
    finally:
        controller._pool.shutdown(wait=True)
        controller.ctx.shutdown()
        journal.close()
