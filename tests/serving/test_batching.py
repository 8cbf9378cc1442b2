"""Dynamic batching: stacked requests answer exactly what each would have alone, in order, and
never across versions, through the request path HTTP and gRPC share (`InferenceService.execute`)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from runtime.backends.base import BackendError, TensorInfo
from runtime.serving.batcher import Batcher, BatchPolicy
from runtime.serving.inference import InferFailure
from runtime.serving.server import inference_service
from runtime.serving.slot import Instance, Repository
from runtime.serving.traffic import Split


class ScalingSession:
    """y = factor * x, row by row, so a batched answer must equal the unbatched one and the
    factor tells which version computed it. Records the rows of every call."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self.inputs = (TensorInfo("x", "FP32", (-1, 4)),)
        self.outputs = (TensorInfo("y", "FP32", (-1, 4)),)
        self.calls: list[int] = []
        self.fail_when: float | None = None  # fail a call holding this value anywhere
        self.released = False
        self._lock = threading.Lock()

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = feeds["x"]
        with self._lock:
            self.calls.append(int(x.shape[0]))
        if self.fail_when is not None and (x == self.fail_when).any():
            raise BackendError("the device fell over")
        return {"y": (x * self.factor).astype(np.float32)}

    def release(self) -> None:
        self.released = True


def batching(size: int, delay_s: float = 0.002, preferred: tuple[int, ...] = ()) -> dict[str, Any]:
    return {
        "max_batch_size": size,
        "max_queue_delay_s": delay_s,
        "preferred_sizes": list(preferred),
    }


def batched_instance(version: str, factor: float, **policy: Any) -> Instance:
    meta = {"batching": batching(**policy)} if policy else {}
    return Instance("m", version, ScalingSession(factor), meta, healthy=True)


@dataclass
class Feeds:
    feeds: dict[str, np.ndarray]


def request(service: Any, x: np.ndarray, rid: str | None = None) -> tuple[str, np.ndarray]:
    """One request through the shared path: (the version that answered, its output)."""
    return service.execute(  # type: ignore[no-any-return]
        "m",
        None,
        rid,
        lambda inst: Feeds({"x": x}),
        lambda inst, decoded, outputs: (inst.version, outputs["y"].copy()),
        0.0,
    )


def concurrently(n: int, work: Any) -> list[Any]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(work, range(n)))


def rows(i: int, count: int = 1) -> np.ndarray:
    return np.arange(4 * count, dtype=np.float32).reshape(count, 4) + 100 * i


def test_a_full_batch_is_one_call_and_each_request_gets_its_own_rows_in_order() -> None:
    session = ScalingSession(3.0)
    # a long delay: the batch goes only because it is full, so exactly one call is certain
    batcher = Batcher(session, BatchPolicy(max_batch_size=6, max_queue_delay_s=30.0))
    sizes = [1, 2, 3]
    results = concurrently(3, lambda i: batcher.infer({"x": rows(i, sizes[i])}))
    assert session.calls == [6]
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result.outputs["y"], rows(i, sizes[i]) * 3.0)
        assert result.batch_size == 6
    assert sum(r.leader for r in results) == 1  # one execution, counted once


def test_a_lone_request_waits_no_longer_than_the_delay_and_is_answered_as_unbatched() -> None:
    session = ScalingSession(2.0)
    batcher = Batcher(session, BatchPolicy(max_batch_size=8, max_queue_delay_s=0.01))
    result = batcher.infer({"x": rows(0, 2)})
    np.testing.assert_array_equal(result.outputs["y"], rows(0, 2) * 2.0)
    assert session.calls == [2] and result.leader and result.batch_size == 2
    assert 0.005 < result.queue_s < 5.0  # it waited for company, reported as queue time


def test_a_preferred_size_sends_the_batch_without_waiting() -> None:
    session = ScalingSession(1.0)
    batcher = Batcher(session, BatchPolicy(max_batch_size=8, max_queue_delay_s=30.0,
                                           preferred_sizes=(2,)))  # fmt: skip
    concurrently(2, lambda i: batcher.infer({"x": rows(i)}))
    assert session.calls == [2]


def test_requests_of_other_shapes_never_share_a_batch() -> None:
    session = ScalingSession(1.0)
    batcher = Batcher(session, BatchPolicy(max_batch_size=2, max_queue_delay_s=30.0))
    wide = {"x": np.ones((1, 5), np.float32)}
    other = {"x": np.ones((1, 4), np.float64)}
    feeds = [{"x": rows(0)}, wide, {"x": rows(1)}, other, wide, other]
    results = concurrently(6, lambda i: batcher.infer(feeds[i]))
    assert sorted(session.calls) == [2, 2, 2]
    for f, r in zip(feeds, results, strict=True):
        assert r.outputs["y"].shape == f["x"].shape


def test_a_failed_batch_fails_its_members_only_each_with_its_own_error() -> None:
    session = ScalingSession(1.0)
    session.fail_when = -1.0
    batcher = Batcher(session, BatchPolicy(max_batch_size=2, max_queue_delay_s=30.0))
    bad = [rows(0), np.full((1, 4), -1.0, np.float32)]

    def bad_pair(i: int) -> BaseException:
        with pytest.raises(BackendError) as caught:
            batcher.infer({"x": bad[i]})
        return caught.value

    errors = concurrently(2, bad_pair)
    assert errors[0] is not errors[1] and "fell over" in str(errors[0])
    good = concurrently(2, lambda i: batcher.infer({"x": rows(i)}))  # the next batch is fine
    np.testing.assert_array_equal(good[1].outputs["y"], rows(1))


def test_a_closed_batcher_refuses_late_requests() -> None:
    inst = batched_instance("1", 1.0, size=4)
    assert inst.batcher is not None
    inst.retire()
    assert inst.session.released  # type: ignore[attr-defined]
    with pytest.raises(BackendError, match="released"):
        inst.batcher.infer({"x": rows(0)})


def test_no_batcher_without_batching_or_for_a_model_that_does_not_batch() -> None:
    assert batched_instance("1", 1.0).batcher is None
    fixed = ScalingSession(1.0)
    fixed.inputs = (TensorInfo("x", "FP32", (1, 4)),)
    assert Instance("m", "1", fixed, {"batching": batching(4)}).batcher is None


def _serving(inst: Instance) -> tuple[Repository, Any]:
    repo = Repository()
    repo.slot("m").activate(inst)
    return repo, inference_service(repo, lambda: True, "9.9", workers=2)


FACTORS = {"1": 1.0, "2": 2.0, "3": 3.0}


def test_concurrent_requests_through_the_service_never_mix_versions_across_swaps() -> None:
    repo, service = _serving(batched_instance("1", FACTORS["1"], size=8, delay_s=0.005))
    slot = repo.slot("m")
    stop = threading.Event()
    answered: list[tuple[str, np.ndarray, np.ndarray]] = []
    threads_before = threading.active_count()

    def client(i: int) -> None:
        n = 0
        while not stop.is_set() or n < 5:
            x = rows(i * 1000 + n, 1 + n % 2)
            version, y = request(service, x, rid=f"{i}-{n}")
            answered.append((version, x, y))
            n += 1

    instances = []
    with ThreadPoolExecutor(8) as clients:
        futures = [clients.submit(client, i) for i in range(8)]
        for round_ in range(6):  # swap back and forth, then a canary stage, under load
            version = "2" if round_ % 2 == 0 else "3"
            cand = batched_instance(version, FACTORS[version], size=8, delay_s=0.005)
            instances.append(cand)
            slot.set_candidate(cand)
            if round_ == 4:
                slot.start_split(Split("canary", 0, 50, "digest", compare=False))
                _wait_served(cand, 3)
            slot.promote_candidate(keep_standby=False)
            _wait_served(cand, 3)
        stop.set()
        for f in futures:
            f.result()
    for version, x, y in answered:  # a request in another version's batch would show here
        np.testing.assert_array_equal(y, x * FACTORS[version])
    batched = [n for inst in instances for n in inst.session.calls]  # type: ignore[attr-defined]
    assert max(batched) > 2, "eight clients should have shared some batches"
    for inst in instances[:-1]:  # swapped out: released, batcher closed
        assert inst.session.released  # type: ignore[attr-defined]
    assert threading.active_count() <= threads_before, "batching left threads behind"
    service.pool.shutdown(wait=False)
    service.batch_pool.shutdown(wait=False)


def test_stats_count_one_execution_per_batch_and_queue_apart_from_compute() -> None:
    _, service = _serving(batched_instance("1", 1.0, size=4, delay_s=30.0))
    concurrently(4, lambda i: request(service, rows(i)))
    stats = service.stats.model_stats("m", "1")
    assert stats["inference_count"] == 4 and stats["execution_count"] == 1
    assert [b["batch_size"] for b in stats["batch_stats"]] == [4]
    assert stats["batch_stats"][0]["compute_infer"]["count"] == 1
    assert stats["inference_stats"]["queue"]["count"] == 4
    metrics = service.metrics.registry
    assert metrics.get_sample_value("hotswap_inference_batch_size_count", {"model": "m", "version": "1"}) == 1  # fmt: skip
    assert metrics.get_sample_value("hotswap_inference_batch_size_sum", {"model": "m", "version": "1"}) == 4  # fmt: skip
    labels = {"model": "m", "version": "1"}
    assert metrics.get_sample_value("hotswap_inference_queue_seconds_count", labels) == 4
    assert metrics.get_sample_value("hotswap_inference_compute_seconds_count", labels) == 4
    service.pool.shutdown(wait=False)
    service.batch_pool.shutdown(wait=False)


def test_a_backend_failure_in_a_batch_is_each_requests_own_infer_failure() -> None:
    repo, service = _serving(batched_instance("1", 1.0, size=2, delay_s=30.0))
    repo.slot("m").active.session.fail_when = -1.0  # type: ignore[union-attr]
    xs = [rows(0), np.full((1, 4), -1.0, np.float32)]

    def failing(i: int) -> InferFailure:
        with pytest.raises(InferFailure) as caught:
            request(service, xs[i])
        return caught.value

    errors = concurrently(2, failing)
    assert [e.kind for e in errors] == ["backend", "backend"] and errors[0] is not errors[1]
    assert service.stats.model_stats("m", "1")["inference_stats"]["fail"]["count"] == 2
    service.pool.shutdown(wait=False)
    service.batch_pool.shutdown(wait=False)


def _wait_served(inst: Instance, calls: int, timeout: float = 30.0) -> None:
    """Until `inst` has run more than `calls` backend calls (bounded polling)."""
    pause = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if len(inst.session.calls) > calls:  # type: ignore[attr-defined]
            return
        pause.wait(0.01)
    raise AssertionError(f"{inst.version} served no more than {calls} calls in {timeout}s")
