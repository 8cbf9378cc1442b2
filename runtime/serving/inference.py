"""One inference request, whatever protocol carried it: the path HTTP and gRPC share.

`InferenceService.execute` (handlers) calls `InferencePath.run` on an inference worker thread
with two protocol callbacks: `decode` turns the request into feeds for the instance it runs on,
`encode` turns the outputs into the protocol's answer. Everything between them is here, once:
taking the instance that is active when the request starts (or the candidate a canary stage
sends it to) and finishing on it, the version check, inference, the mirror, and the accounting
(Prometheus metrics, Triton statistics, the access log). Dynamic batching sits under
`_run_session` (the instance's `Batcher`, runtime.serving.batcher), so it serves both protocols
alike; the wait to be batched counts as queue time, apart from compute.

A failure leaves as one `InferFailure` whose `kind` each protocol maps to its own code
(`HTTP_STATUS` here; gRPC's table in `runtime.serving.grpc.servicer`), so the two protocols
can never disagree on whose mistake a failure was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

import numpy as np
import structlog

from runtime.backends.base import BackendError
from runtime.serving.metrics import Metrics
from runtime.serving.mirror import Mirror, finite
from runtime.serving.model_config import batch_rows
from runtime.serving.slot import Instance, ModelSlot, NotReady, Repository
from runtime.serving.stats import InferenceStats, Timings
from runtime.serving.v2 import BadRequest

log = structlog.get_logger("hotswap.access")

Tensors = dict[str, np.ndarray]
Kind = Literal["invalid", "too-large", "not-found", "unavailable", "backend"]
# The HTTP status of each kind; the `code` label of the request counter uses it for every
# protocol, so a dashboard counts client mistakes and outages the same however they came.
HTTP_STATUS: dict[Kind, int] = {
    "invalid": 400,
    "too-large": 413,
    "not-found": 404,
    "unavailable": 503,
    "backend": 500,
}
ERROR_KIND = {503: "unavailable", 500: "backend"}  # metrics' kinds; any other is the client's


class InferFailure(Exception):
    """A request that could not be answered; `kind` says whose problem it is."""

    def __init__(self, kind: Kind, message: str) -> None:
        super().__init__(message)
        self.kind: Kind = kind
        self.message = message


class Decoded(Protocol):
    """What a protocol's decoder gives: at least the feeds for the session."""

    @property
    def feeds(self) -> Tensors: ...


D = TypeVar("D", bound=Decoded)
T = TypeVar("T")


def no_model(repo: Repository, name: str) -> InferFailure:
    """No slot for `name`: declared by the control plane but nothing loaded now (a store copy
    being fetched again, say), or a name nobody declared."""
    if repo.known(name):
        return InferFailure("unavailable", f"model {name!r} is not loaded now; try again later")
    return InferFailure("not-found", f"unknown model {name!r}")


def no_such_version(name: str, version: str, active: str) -> InferFailure:
    return InferFailure(
        "not-found", f"model {name!r} has no version {version!r} serving (active: {active})"
    )


@dataclass
class _Call:
    """What one request reached, for its accounting."""

    timings: Timings
    served: str = "-"  # the version that served it; "-" if none was reached
    code: int = 200
    rows: int = 1
    # rows of the backend call this request ran (its own, or the batch it led); None when it
    # joined a batch another request ran, so each execution is counted once
    execution: int | None = None


class InferencePath:
    def __init__(
        self,
        repo: Repository,
        metrics: Metrics,
        stats: InferenceStats,
        mirror: Mirror,
        access_log: bool,
    ) -> None:
        self.repo = repo
        self.metrics = metrics
        self.stats = stats
        self.mirror = mirror
        self.access_log = access_log

    def run(
        self,
        name: str,
        version: str | None,
        request_id: str | None,
        decode: Callable[[Instance], D],
        encode: Callable[[Instance, D, Tensors], T],
        arrived: float,
    ) -> T:
        """The request's answer, entirely from the instance active when it started.
        `arrived` (perf_counter) is when the protocol had the request: the wait for a worker
        thread since then is its queue time."""
        call = _Call(Timings(queue=time.perf_counter() - arrived))
        try:
            slot = self.repo.get(name)
            if slot is None:
                raise no_model(self.repo, name)
            return self._answer(call, slot, version, request_id, decode, encode)
        except NotReady:
            call.code = 503
            raise InferFailure("unavailable", f"model {name!r} is not ready") from None
        except BadRequest as e:
            call.code = 400
            raise InferFailure("invalid", str(e)) from e
        except InferFailure as e:
            call.code = HTTP_STATUS[e.kind]
            raise
        finally:
            elapsed = time.perf_counter() - arrived
            self._account(name, call, elapsed, request_id)
            if call.served != "-":
                ok = call.code == 200
                self.stats.record(
                    name, call.served, ok, call.rows, call.timings, elapsed, call.execution
                )

    def _answer(
        self,
        call: _Call,
        slot: ModelSlot,
        version: str | None,
        request_id: str | None,
        decode: Callable[[Instance], D],
        encode: Callable[[Instance, D, Tensors], T],
    ) -> T:
        timings = call.timings
        with slot.acquire(request_id) as inst:
            call.served = inst.version
            if version and version != inst.version:
                raise no_such_version(slot.name, version, inst.version)
            decoded = timings.time("compute_input", lambda: decode(inst))
            call.rows = batch_rows(inst, decoded.feeds)
            outputs = self._run_session(call, slot, inst, decoded.feeds)
            self.mirror.offer(slot, inst, request_id, decoded.feeds, outputs)
            return timings.time("compute_output", lambda: encode(inst, decoded, outputs))

    def _run_session(self, call: _Call, slot: ModelSlot, inst: Instance, feeds: Tensors) -> Tensors:
        """Inference alone, timed and counted for the rollout stage in progress (if any): the
        gates compare versions on what differs between them, not on protocols and decoding.
        Through the instance's batcher when it has one: its wait for a batch is queue time."""
        started = time.perf_counter()
        try:
            if inst.batcher is None:
                outputs = inst.session.infer(feeds)
                compute = time.perf_counter() - started
                call.execution = call.rows
            else:
                result = inst.batcher.infer(feeds)
                outputs, compute = result.outputs, result.compute_s
                call.timings.queue += result.queue_s
                call.execution = result.batch_size if result.leader else None
        except BackendError as e:
            call.timings.compute_infer += time.perf_counter() - started
            slot.record(inst, False, time.perf_counter() - started)
            raise InferFailure("backend", f"inference failed: {e}") from e
        call.timings.compute_infer += compute
        if slot.split is not None:
            slot.record(inst, finite(outputs), compute)
        return outputs

    def account_unserved(self, name: str, code: int, request_id: str | None) -> None:
        """A request answered before any instance was reached (nothing loaded to size it by)."""
        self._account(name, _Call(Timings(queue=0.0), code=code), 0.0, request_id)

    def _account(self, name: str, call: _Call, elapsed: float, request_id: str | None) -> None:
        """Request count, latency (and its queue and compute parts) or error kind, the batch
        size of an execution this request ran, and the access log line."""
        served, code, metrics = call.served, call.code, self.metrics
        metrics.requests.labels(name, served, str(code)).inc()
        if code == 200:
            metrics.latency.labels(name, served).observe(elapsed)
            metrics.queue.labels(name, served).observe(call.timings.queue)
            metrics.compute.labels(name, served).observe(call.timings.compute_infer)
            if call.execution is not None:
                metrics.batch_size.labels(name, served).observe(call.execution)
        else:
            metrics.errors.labels(name, ERROR_KIND.get(code, "client")).inc()
        if self.access_log:
            log.info(
                "infer",
                model=name,
                version=served,
                status=code,
                ms=round(elapsed * 1000, 3),
                request_id=request_id,
            )
