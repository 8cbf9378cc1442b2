"""The V2 route handlers, as methods of one `InferenceService` that holds what they share: the
repository of model slots, the metrics, the Triton statistics, the inference thread pool and the
mirror.

`runtime.serving.server` makes one and routes to its methods; the gRPC servicer
(`runtime.serving.grpc.servicer`) serves from the same one. The async handlers answer on the
event loop only what needs no model work (health, metadata) and read request bodies; everything
from JSON parsing to encoding the response runs in `run_infer` on one worker thread, through
`execute` (the path every protocol shares, `runtime.serving.inference`), holding the instance
the request started on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from runtime.serving import limits as limits_module
from runtime.serving.body import read_body
from runtime.serving.inference import (
    ERROR_KIND,
    HTTP_STATUS,
    Decoded,
    InferencePath,
    InferFailure,
    Tensors,
    no_model,
    no_such_version,
)
from runtime.serving.limits import (
    RequestLimits,
    input_limits,
    largest_shapes,
    too_many_values,
    widest,
)
from runtime.serving.metrics import Metrics
from runtime.serving.mirror import Mirror
from runtime.serving.responses import (
    HEADER_LENGTH,
    RETRY_AFTER,
    error_response,
    render_response,
)
from runtime.serving.slot import Instance, ModelSlot, Repository
from runtime.serving.stats import InferenceStats
from runtime.serving.v2 import (
    BadRequest,
    InferRequest,
    decode_request,
    encode_response,
    split_body,
)

# No body is larger, whatever the model takes (each model's own limit is usually far lower).
MAX_BODY_BYTES = limits_module.MAX_BODY_BYTES
BATCH_WAITERS = 64  # requests that can wait for a batch at once, all batching models together
# What server metadata advertises, over HTTP and gRPC (model_repository: the index; load and
# unload answer with a refusal, see runtime.serving.extensions)
EXTENSIONS = ["binary_tensor_data", "model_configuration", "statistics", "model_repository"]

D = TypeVar("D", bound=Decoded)
T = TypeVar("T")


def _failure(e: InferFailure) -> Response:
    return error_response(HTTP_STATUS[e.kind], e.message)


def _no_such_version(name: str, version: str, active: str) -> Response:
    return error_response(404, no_such_version(name, version, active).message)


class TooLarge(Exception):
    """The request holds more than the model can take: HTTP 413 with this message."""


def _parse_body(
    body_bytes: bytes | bytearray, header_length: str | None, limits: RequestLimits
) -> tuple[Any, memoryview]:
    """The JSON header of a request (parsed) and its binary tensor data."""
    header, binary = split_body(body_bytes, header_length)
    if len(header) > limits.json_bytes:
        raise TooLarge(
            f"the JSON header of {len(header)} bytes exceeds {limits.json_bytes}, the most the"
            f" model's inputs need ({limits.describe()})"
        )
    problem = too_many_values(header, limits)
    if problem is not None:
        raise TooLarge(problem)
    try:
        # orjson: a 224x224 image as JSON parses about 5x faster than with json, and the
        # parse holds the GIL that the other requests' inference threads need.
        return orjson.loads(header), binary
    except (ValueError, RecursionError) as e:  # RecursionError: nesting deeper than the stack
        raise BadRequest(f"request body is not valid JSON: {e}") from e


class InferenceService:
    """What the V2 routes serve from; `workers` threads run inference."""

    def __init__(
        self,
        repo: Repository,
        is_ready: Callable[[], bool],
        server_version: str,
        metrics: Metrics,
        workers: int,
        access_log: bool,
    ) -> None:
        self.repo = repo
        self.is_ready = is_ready
        self.server_version = server_version
        self.metrics = metrics
        self.access_log = access_log
        self.workers = workers
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hotswap-infer")
        # Requests of batching models wait for their batch on a thread: a pool of their own,
        # so waiting is not capped at `workers` and never starves the models that do not batch.
        self.batch_pool = ThreadPoolExecutor(
            max_workers=BATCH_WAITERS, thread_name_prefix="hotswap-batch"
        )
        self.mirror = Mirror(workers=max(1, workers // 2))
        self.stats = InferenceStats()
        self.path = InferencePath(repo, metrics, self.stats, self.mirror, access_log)
        repo.on_revert_served = self._observe_revert

    def pool_for(self, name: str) -> ThreadPoolExecutor:
        """Where a request for `name` runs: the batch pool while its active version batches
        (which instance serves it is still decided on that thread, by `InferencePath`)."""
        slot = self.repo.get(name)
        active = slot.active if slot is not None else None
        return self.batch_pool if active is not None and active.batcher else self.pool

    def _observe_revert(self, model: str, seconds: float) -> None:
        self.metrics.revert_seconds.labels(model).observe(seconds)

    # --- answered on the event loop ---------------------------------------------------------

    async def server_metadata(self, _: Request) -> Response:
        return JSONResponse(
            {
                "name": "hotswap",
                "version": self.server_version,
                "extensions": EXTENSIONS,
            }
        )

    async def live(self, _: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(self, _: Request) -> Response:
        ok = self.is_ready()
        if ok:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False}, status_code=503, headers=RETRY_AFTER)

    async def metrics_endpoint(self, _: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def instance_for(self, name: str, version: str | None) -> Instance | Response:
        """The active instance of `name` (of `version`, if given), or the error response."""
        slot = self.repo.get(name)
        if slot is None:
            return _failure(no_model(self.repo, name))
        inst = slot.active
        if inst is None:
            return error_response(503, f"model {name!r} is not ready")
        if version is not None and version != inst.version:
            return _no_such_version(name, version, inst.version)
        return inst

    async def model_metadata(self, request: Request) -> Response:
        name = request.path_params["model"]
        inst = self.instance_for(name, request.path_params.get("version"))
        if isinstance(inst, Response):
            return inst
        return JSONResponse(
            {
                "name": name,
                "versions": [inst.version],
                "platform": inst.meta.get("platform", "onnxruntime_onnx"),
                "inputs": [t.to_json() for t in inst.session.inputs],
                "outputs": [t.to_json() for t in inst.session.outputs],
            }
        )

    async def model_ready(self, request: Request) -> Response:
        name = request.path_params["model"]
        inst = self.instance_for(name, request.path_params.get("version"))
        if isinstance(inst, Response):
            return inst
        return JSONResponse({"name": name, "ready": True})

    async def infer(self, request: Request) -> Response:
        name = request.path_params["model"]
        slot = self.repo.get(name)
        if slot is None:
            missing = no_model(self.repo, name)
            self.metrics.errors.labels(
                name, ERROR_KIND.get(HTTP_STATUS[missing.kind], "client")
            ).inc()
            return _failure(missing)
        limits = self._limits(slot)
        if limits is None:  # nothing loaded: no body is worth reading
            self.path.account_unserved(name, 503, request.headers.get("x-request-id"))
            return error_response(503, f"model {name!r} is not ready")
        body = await read_body(request, name, limits, MAX_BODY_BYTES)
        if isinstance(body, Response):
            self.metrics.errors.labels(name, "client").inc()
            return body
        return await asyncio.get_running_loop().run_in_executor(
            self.pool_for(name),
            self.run_infer,
            name,
            request.path_params.get("version"),
            body,
            request.headers.get(HEADER_LENGTH),
            request.headers.get("x-request-id"),
            time.perf_counter(),
            limits,
        )

    @staticmethod
    def _limits(slot: ModelSlot) -> RequestLimits | None:
        """What a request may hold: what the active version (or, during a canary, the
        candidate a request may land on) can take. None: nothing is loaded."""
        loaded = [i for i in (slot.active, slot.candidate) if i is not None]
        return widest(input_limits(i.session.inputs, i.meta) for i in loaded)

    # --- on an inference worker thread ------------------------------------------------------

    def execute(
        self,
        name: str,
        version: str | None,
        request_id: str | None,
        decode: Callable[[Instance], D],
        encode: Callable[[Instance, D, Tensors], T],
        arrived: float,
    ) -> T:
        """Any protocol's request, on the path they share (`InferencePath.run`); raises
        `InferFailure`. HTTP's `run_infer` and gRPC's `ModelInfer` both come here."""
        return self.path.run(name, version, request_id, decode, encode, arrived)

    def run_infer(
        self,
        name: str,
        version: str | None,
        body_bytes: bytes | bytearray,
        header_length: str | None,
        request_id: str | None,
        arrived: float,
        limits: RequestLimits,
    ) -> Response:
        """One HTTP request, entirely on the instance that was active when it started, read
        under `limits` (what the model's inputs can take)."""

        def decode(inst: Instance) -> InferRequest:
            try:
                body, binary = _parse_body(body_bytes, header_length, limits)
            except TooLarge as e:
                raise InferFailure("too-large", str(e)) from e
            largest = largest_shapes(inst.session.inputs, inst.meta)
            session = inst.session
            return decode_request(body, session.inputs, session.outputs, binary, largest)

        def encode(inst: Instance, req: InferRequest, outputs: Tensors) -> Response:
            return render_response(encode_response(name, inst.version, req, outputs))

        try:
            return self.execute(name, version, request_id, decode, encode, arrived)
        except InferFailure as e:
            return _failure(e)
