"""The V2 route handlers, as methods of one `InferenceService` that holds what they share: the
repository of model slots, the metrics, the inference thread pool and the mirror.

`runtime.serving.server.create_app` makes one and routes to its methods. The async handlers
answer on the event loop only what needs no model work (health, metadata) and read request
bodies; everything from JSON parsing to encoding the response runs in `run_infer` on one
worker thread, holding the instance the request started on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from runtime.backends.base import BackendError
from runtime.serving import limits as limits_module
from runtime.serving.body import read_body
from runtime.serving.limits import RequestLimits, input_limits, too_many_values, widest
from runtime.serving.metrics import Metrics
from runtime.serving.mirror import Mirror, finite
from runtime.serving.responses import HEADER_LENGTH, error_response, render_response
from runtime.serving.slot import Instance, ModelSlot, NotReady, Repository
from runtime.serving.v2 import BadRequest, decode_request, encode_response, split_body

log = structlog.get_logger("hotswap.access")

# No body is larger, whatever the model takes (each model's own limit is usually far lower).
MAX_BODY_BYTES = limits_module.MAX_BODY_BYTES

_ERROR_KIND = {503: "unavailable", 500: "backend"}  # any other failure is the client's


def _no_such_version(name: str, version: str, active: str) -> Response:
    return error_response(
        404, f"model {name!r} has no version {version!r} serving (active: {active})"
    )


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
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hotswap-infer")
        self.mirror = Mirror(workers=max(1, workers // 2))
        repo.on_revert_served = self._observe_revert

    def _observe_revert(self, model: str, seconds: float) -> None:
        self.metrics.revert_seconds.labels(model).observe(seconds)

    # --- answered on the event loop ---------------------------------------------------------

    async def server_metadata(self, _: Request) -> Response:
        return JSONResponse(
            {
                "name": "hotswap",
                "version": self.server_version,
                "extensions": ["binary_tensor_data"],
            }
        )

    async def live(self, _: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(self, _: Request) -> Response:
        ok = self.is_ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def metrics_endpoint(self, _: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def _instance_for(self, name: str, version: str | None) -> Instance | Response:
        """The active instance of `name` (of `version`, if given), or the error response."""
        slot = self.repo.get(name)
        if slot is None:
            return error_response(404, f"unknown model {name!r}")
        inst = slot.active
        if inst is None:
            return error_response(503, f"model {name!r} is not ready")
        if version is not None and version != inst.version:
            return _no_such_version(name, version, inst.version)
        return inst

    async def model_metadata(self, request: Request) -> Response:
        name = request.path_params["model"]
        inst = self._instance_for(name, request.path_params.get("version"))
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
        inst = self._instance_for(name, request.path_params.get("version"))
        if isinstance(inst, Response):
            return inst
        return JSONResponse({"name": name, "ready": True})

    async def infer(self, request: Request) -> Response:
        name = request.path_params["model"]
        slot = self.repo.get(name)
        if slot is None:
            self.metrics.errors.labels(name, "client").inc()
            return error_response(404, f"unknown model {name!r}")
        limits = self._limits(slot)
        if limits is None:  # nothing loaded: no body is worth reading
            self._account(name, "-", 503, 0.0, request.headers.get("x-request-id"))
            return error_response(503, f"model {name!r} is not ready")
        body = await read_body(request, name, limits, MAX_BODY_BYTES)
        if isinstance(body, Response):
            self.metrics.errors.labels(name, "client").inc()
            return body
        return await asyncio.get_running_loop().run_in_executor(
            self.pool,
            self.run_infer,
            name,
            request.path_params.get("version"),
            slot,
            body,
            request.headers.get(HEADER_LENGTH),
            request.headers.get("x-request-id"),
            limits,
        )

    @staticmethod
    def _limits(slot: ModelSlot) -> RequestLimits | None:
        """What a request may hold: what the active version (or, during a canary, the
        candidate a request may land on) can take. None: nothing is loaded."""
        loaded = [i for i in (slot.active, slot.candidate) if i is not None]
        return widest(input_limits(i.session.inputs, i.meta) for i in loaded)

    # --- on an inference worker thread ------------------------------------------------------

    def run_infer(
        self,
        name: str,
        version: str | None,
        slot: ModelSlot,
        body_bytes: bytes | bytearray,
        header_length: str | None,
        request_id: str | None,
        limits: RequestLimits,
    ) -> Response:
        """One request, entirely on the instance that was active when it started."""
        start = time.perf_counter()
        response, served = self._answer(
            name, version, slot, (body_bytes, header_length, limits), request_id
        )
        self._account(name, served, response.status_code, time.perf_counter() - start, request_id)
        return response

    def _answer(
        self,
        name: str,
        version: str | None,
        slot: ModelSlot,
        raw: tuple[bytes | bytearray, str | None, RequestLimits],
        request_id: str | None,
    ) -> tuple[Response, str]:
        """The response, and the version that served it ("-" if none was reached). `raw`: the
        body, its Inference-Header-Content-Length and the limits it was read under."""
        served = "-"
        try:
            body, binary = _parse_body(*raw)
            with slot.acquire(request_id) as inst:
                served = inst.version
                if version is not None and version != inst.version:
                    return _no_such_version(name, version, inst.version), served
                largest = {
                    i.name: i.shape for i in input_limits(inst.session.inputs, inst.meta).inputs
                }
                session = inst.session
                req = decode_request(body, session.inputs, session.outputs, binary, largest)
                outputs = self._run_session(slot, inst, req.feeds)
                self.mirror.offer(slot, inst, request_id, req.feeds, outputs)
                return render_response(encode_response(name, inst.version, req, outputs)), served
        except NotReady:
            return error_response(503, f"model {name!r} is not ready"), served
        except BadRequest as e:
            return error_response(400, str(e)), served
        except TooLarge as e:
            return error_response(413, str(e)), served
        except BackendError as e:
            return error_response(500, f"inference failed: {e}"), served

    def _run_session(
        self, slot: ModelSlot, inst: Instance, feeds: dict[str, Any]
    ) -> dict[str, Any]:
        """Inference alone, timed and counted for the rollout stage in progress (if any): the
        gates compare versions on what differs between them, not on HTTP and decoding."""
        started = time.perf_counter()
        try:
            outputs = inst.session.infer(feeds)
        except BackendError:
            slot.record(inst, False, time.perf_counter() - started)
            raise
        if slot.split is not None:
            slot.record(inst, finite(outputs), time.perf_counter() - started)
        return outputs

    def _account(
        self, name: str, served: str, code: int, elapsed: float, request_id: str | None
    ) -> None:
        """Request count, latency or error kind, and the access log line."""
        self.metrics.requests.labels(name, served, str(code)).inc()
        if code == 200:
            self.metrics.latency.labels(name, served).observe(elapsed)
        else:
            self.metrics.errors.labels(name, _ERROR_KIND.get(code, "client")).inc()
        if self.access_log:
            log.info(
                "infer",
                model=name,
                version=served,
                status=code,
                ms=round(elapsed * 1000, 3),
                request_id=request_id,
            )
