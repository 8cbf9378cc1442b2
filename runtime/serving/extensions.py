"""Triton's read-only extensions over HTTP: model configuration, statistics, repository index,
and the refusal of repository load/unload.

Routed by `runtime.serving.server`; the shapes come from the data-plane modules gRPC renders
too (`model_config`, `stats`, `repository_index`), so both protocols answer alike. What is served
changes only through desired state, so `load` and `unload` are refused with a message that says
so (403: the request is understood and will not be carried out here).
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from runtime.serving.handlers import InferenceService
from runtime.serving.model_config import model_config
from runtime.serving.repository_index import repository_index
from runtime.serving.responses import error_response
from runtime.serving.stats import statistics

REPOSITORY_REFUSAL = (
    "hotswap serves what desired state asks for: change the model's desired-state file"
    " (spec.model.version) to load, swap or unload a version; repository {action} is not"
    " available over the API"
)


class TritonExtensions:
    def __init__(self, service: InferenceService) -> None:
        self.service = service

    async def config(self, request: Request) -> Response:
        name = request.path_params["model"]
        inst = self.service.instance_for(name, request.path_params.get("version"))
        if isinstance(inst, Response):
            return inst
        return JSONResponse(model_config(name, inst))

    async def stats(self, request: Request) -> Response:
        try:
            body = statistics(
                self.service.repo,
                self.service.stats,
                request.path_params.get("model"),
                request.path_params.get("version"),
            )
        except LookupError as e:
            return error_response(404, str(e.args[0]))
        return JSONResponse(body)

    async def index(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError as e:
            return error_response(400, f"request body is not valid JSON: {e}")
        if not isinstance(body, dict) or not isinstance(body.get("ready", False), bool):
            return error_response(400, 'the body must be an object like {"ready": true}')
        return JSONResponse(repository_index(self.service.repo, body.get("ready", False)))

    async def load(self, _: Request) -> Response:
        return error_response(403, REPOSITORY_REFUSAL.format(action="load"))

    async def unload(self, _: Request) -> Response:
        return error_response(403, REPOSITORY_REFUSAL.format(action="unload"))
