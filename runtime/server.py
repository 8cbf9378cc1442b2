"""The KServe V2 HTTP server (Starlette on uvicorn).

Starlette because the V2 surface is a handful of routes and we want the ASGI app testable
in-process (`httpx.ASGITransport`) with no framework magic; uvicorn because it is the
best-kept ASGI server. Inference runs in worker threads (ONNX Runtime releases the GIL), so the
event loop keeps answering health probes during long requests. Changes to what is served come
only through desired state, never through this API.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runtime.backends.base import BackendError
from runtime.slot import Instance, NotReady, Repository
from runtime.v2 import BadRequest, decode_request, encode_response

MAX_BODY_BYTES = 256 * 1024 * 1024


class V2JSONResponse(JSONResponse):
    # Model outputs can legitimately hold NaN/Inf; Python's json writes them as NaN/Infinity,
    # which every mainstream client parses, instead of failing the response with a 500.
    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), allow_nan=True).encode()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(
    repo: Repository, is_ready: Callable[[], bool], server_version: str = "0"
) -> Starlette:
    async def server_metadata(_: Request) -> Response:
        return JSONResponse({"name": "hotswap", "version": server_version, "extensions": []})

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
            return _error(404, f"unknown model {name!r}")
        body_bytes = await request.body()
        if len(body_bytes) > MAX_BODY_BYTES:
            return _error(413, f"request body of {len(body_bytes)} bytes exceeds {MAX_BODY_BYTES}")
        try:
            body = json.loads(body_bytes)
        except (ValueError, RecursionError) as e:  # RecursionError: nesting deeper than the stack
            return _error(400, f"request body is not valid JSON: {e}")

        def run() -> Response:
            try:
                with slot.acquire() as inst:
                    if version is not None and version != inst.version:
                        return _error(
                            404,
                            f"model {name!r} has no version {version!r} serving (active: {inst.version})",
                        )
                    req = decode_request(body, inst.session.inputs, inst.session.outputs)
                    results = inst.session.infer(req.feeds)
                    return V2JSONResponse(encode_response(name, inst.version, req, results))
            except NotReady:
                return _error(503, f"model {name!r} is not ready")
            except BadRequest as e:
                return _error(400, str(e))
            except BackendError as e:
                return _error(500, f"inference failed: {e}")

        return await run_in_threadpool(run)

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
    ]
    return Starlette(routes=routes)
