"""The KServe V2 HTTP server (Starlette on uvicorn).

Starlette because the V2 surface is a handful of routes and we want the ASGI app testable
in-process (`httpx.ASGITransport`) with no framework magic; uvicorn because it is the
best-kept ASGI server. Inference runs in a pool of worker threads sized to the machine (ONNX
Runtime releases the GIL), so the event loop keeps answering health probes during long
requests, and decoding, inference and encoding of a request all happen on one worker thread
while it holds the instance it started on. Changes to what is served come
only through desired state, never through this API.

This module only assembles the app: the handlers are `handlers.InferenceService`'s methods,
the response rendering is in `responses`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.routing import Route

from runtime.serving.handlers import MAX_BODY_BYTES, InferenceService
from runtime.serving.metrics import Metrics
from runtime.serving.responses import HEADER_LENGTH, V2JSONResponse, render_response
from runtime.serving.slot import Repository

__all__ = [
    "HEADER_LENGTH",
    "MAX_BODY_BYTES",
    "V2JSONResponse",
    "create_app",
    "default_workers",
    "render_response",
]


def default_workers() -> int:
    """One inference thread per core: with single-threaded sessions (the ONNX Runtime default
    here) that keeps the cores busy without oversubscribing them, however many versions are
    loaded during a swap."""
    return max(1, os.cpu_count() or 1)


def create_app(
    repo: Repository,
    is_ready: Callable[[], bool],
    server_version: str = "0",
    metrics: Metrics | None = None,
    workers: int | None = None,
    access_log: bool = False,
) -> Starlette:
    """The V2 app. `workers` threads run inference (default: one per core, see `default_workers`)."""
    service = InferenceService(
        repo,
        is_ready,
        server_version,
        metrics or Metrics(),
        workers or default_workers(),
        access_log,
    )
    routes = [
        Route("/v2", service.server_metadata),
        Route("/v2/health/live", service.live),
        Route("/v2/health/ready", service.ready),
        Route("/v2/models/{model}", service.model_metadata),
        Route("/v2/models/{model}/ready", service.model_ready),
        Route("/v2/models/{model}/infer", service.infer, methods=["POST"]),
        Route("/v2/models/{model}/versions/{version}", service.model_metadata),
        Route("/v2/models/{model}/versions/{version}/ready", service.model_ready),
        Route("/v2/models/{model}/versions/{version}/infer", service.infer, methods=["POST"]),
        Route("/metrics", service.metrics_endpoint),
    ]
    return Starlette(routes=routes)
