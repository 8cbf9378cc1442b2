"""The KServe V2 HTTP server (Starlette on uvicorn).

Starlette because the V2 surface is a handful of routes and we want the ASGI app testable
in-process (`httpx.ASGITransport`) with no framework magic; uvicorn because it is the
best-kept ASGI server. Inference runs in a pool of worker threads sized to the machine (ONNX
Runtime releases the GIL), so the event loop keeps answering health probes during long
requests, and decoding, inference and encoding of a request all happen on one worker thread
while it holds the instance it started on. Changes to what is served come
only through desired state, never through this API.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runtime.backends.base import BackendError
from runtime.serving.metrics import Metrics
from runtime.serving.mirror import Mirror, finite
from runtime.serving.slot import Instance, ModelSlot, NotReady, Repository
from runtime.serving.v2 import (
    BadRequest,
    EncodedResponse,
    decode_request,
    encode_response,
    split_body,
)

log = structlog.get_logger("hotswap.access")

MAX_BODY_BYTES = 256 * 1024 * 1024
HEADER_LENGTH = "Inference-Header-Content-Length"


def default_workers() -> int:
    """One inference thread per core: with single-threaded sessions (the ONNX Runtime default
    here) that keeps the cores busy without oversubscribing them, however many versions are
    loaded during a swap."""
    return max(1, os.cpu_count() or 1)


class V2JSONResponse(JSONResponse):
    # Model outputs can legitimately hold NaN/Inf; Python's json writes them as NaN/Infinity,
    # which every mainstream client parses, instead of failing the response with a 500.
    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), allow_nan=True).encode()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def render_response(encoded: EncodedResponse) -> Response:
    """A V2 response: plain JSON, or the JSON header followed by binary output tensors."""
    if not encoded.binary:
        return V2JSONResponse(encoded.header)
    header = json.dumps(encoded.header, separators=(",", ":"), allow_nan=True).encode()
    return Response(
        b"".join((header, *encoded.binary)),
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )


def create_app(
    repo: Repository,
    is_ready: Callable[[], bool],
    server_version: str = "0",
    metrics: Metrics | None = None,
    workers: int | None = None,
    access_log: bool = False,
) -> Starlette:
    """The V2 app. `workers` threads run inference (default: one per core, see `default_workers`)."""
    metrics = metrics or Metrics()
    workers = workers or default_workers()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hotswap-infer")
    mirror = Mirror(workers=max(1, workers // 2))
    repo.on_revert_served = lambda model, seconds: metrics.revert_seconds.labels(model).observe(
        seconds
    )

    async def loop_run(fn: Callable[..., Response], *args: Any) -> Response:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    async def server_metadata(_: Request) -> Response:
        return JSONResponse(
            {"name": "hotswap", "version": server_version, "extensions": ["binary_tensor_data"]}
        )

    async def live(_: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(_: Request) -> Response:
        ok = is_ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    def _instance_for(name: str, version: str | None) -> tuple[Instance | None, Response | None]:
        slot = repo.get(name)
        if slot is None:
            return None, _error(404, f"unknown model {name!r}")
        inst = slot.active
        if inst is None:
            return None, _error(503, f"model {name!r} is not ready")
        if version is not None and version != inst.version:
            return None, _error(
                404, f"model {name!r} has no version {version!r} serving (active: {inst.version})"
            )
        return inst, None

    async def model_metadata(request: Request) -> Response:
        name = request.path_params["model"]
        inst, err = _instance_for(name, request.path_params.get("version"))
        if err:
            return err
        assert inst is not None
        return JSONResponse(
            {
                "name": name,
                "versions": [inst.version],
                "platform": inst.meta.get("platform", "onnxruntime_onnx"),
                "inputs": [t.to_json() for t in inst.session.inputs],
                "outputs": [t.to_json() for t in inst.session.outputs],
            }
        )

    async def model_ready(request: Request) -> Response:
        name = request.path_params["model"]
        _, err = _instance_for(name, request.path_params.get("version"))
        if err:
            return err
        return JSONResponse({"name": name, "ready": True})

    async def infer(request: Request) -> Response:
        name = request.path_params["model"]
        version = request.path_params.get("version")
        slot = repo.get(name)
        if slot is None:
            metrics.errors.labels(name, "client").inc()
            return _error(404, f"unknown model {name!r}")
        declared = request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            metrics.errors.labels(name, "client").inc()
            return _error(413, f"request body of {declared} bytes exceeds {MAX_BODY_BYTES}")
        # Read chunk by chunk and stop at the limit: a chunked body (no content-length) or one
        # longer than it claimed is refused without holding more than the limit in memory.
        chunks: list[bytes] = []
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > MAX_BODY_BYTES:
                metrics.errors.labels(name, "client").inc()
                return _error(413, f"request body exceeds {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
        body_bytes = b"".join(chunks)
        request_id = request.headers.get("x-request-id")
        return await loop_run(
            run_infer,
            name,
            version,
            slot,
            body_bytes,
            request.headers.get(HEADER_LENGTH),
            request_id,
        )

    def _run_session(slot: ModelSlot, inst: Instance, feeds: dict[str, Any]) -> dict[str, Any]:
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

    def run_infer(
        name: str,
        version: str | None,
        slot: ModelSlot,
        body_bytes: bytes,
        header_length: str | None,
        request_id: str | None,
    ) -> Response:
        """One request, entirely on the instance that was active when it started."""
        start = time.perf_counter()
        served = "-"
        response: Response
        try:
            header, binary = split_body(body_bytes, header_length)
            try:
                # orjson: a 224x224 image as JSON parses about 5x faster than with json, and the
                # parse holds the GIL that the other requests' inference threads need.
                body = orjson.loads(header)
            except (
                ValueError,
                RecursionError,
            ) as e:  # RecursionError: nesting deeper than the stack
                raise BadRequest(f"request body is not valid JSON: {e}") from e
            with slot.acquire(request_id) as inst:
                served = inst.version
                if version is not None and version != inst.version:
                    response = _error(
                        404,
                        f"model {name!r} has no version {version!r} serving (active: {inst.version})",
                    )
                else:
                    req = decode_request(body, inst.session.inputs, inst.session.outputs, binary)
                    outputs = _run_session(slot, inst, req.feeds)
                    mirror.offer(slot, inst, request_id, req.feeds, outputs)
                    response = render_response(encode_response(name, inst.version, req, outputs))
        except NotReady:
            response = _error(503, f"model {name!r} is not ready")
        except BadRequest as e:
            response = _error(400, str(e))
        except BackendError as e:
            response = _error(500, f"inference failed: {e}")
        elapsed = time.perf_counter() - start
        code = response.status_code
        metrics.requests.labels(name, served, str(code)).inc()
        if code == 200:
            metrics.latency.labels(name, served).observe(elapsed)
        else:
            metrics.errors.labels(
                name, {503: "unavailable", 500: "backend"}.get(code, "client")
            ).inc()
        if access_log:
            log.info(
                "infer",
                model=name,
                version=served,
                status=code,
                ms=round(elapsed * 1000, 3),
                request_id=request_id,
            )
        return response

    async def metrics_endpoint(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/v2", server_metadata),
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2/models/{model}", model_metadata),
        Route("/v2/models/{model}/ready", model_ready),
        Route("/v2/models/{model}/infer", infer, methods=["POST"]),
        Route("/v2/models/{model}/versions/{version}", model_metadata),
        Route("/v2/models/{model}/versions/{version}/ready", model_ready),
        Route("/v2/models/{model}/versions/{version}/infer", infer, methods=["POST"]),
        Route("/metrics", metrics_endpoint),
    ]
    return Starlette(routes=routes)
