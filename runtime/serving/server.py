"""The KServe V2 HTTP server (Starlette on uvicorn).

Starlette because the V2 surface is a handful of routes and we want the ASGI app testable
in-process (`httpx.ASGITransport`) with no framework magic; uvicorn because it is the
best-kept ASGI server. Inference runs in a pool of worker threads sized to the machine (ONNX
Runtime releases the GIL), so the event loop keeps answering health probes during long
requests, and decoding, inference and encoding of a request all happen on one worker thread
while it holds the instance it started on. Changes to what is served come
only through desired state, never through this API.

This module only assembles the app: the handlers are `handlers.InferenceService`'s methods and
`extensions.TritonExtensions`' (model configuration, statistics, repository index), the response
rendering is in `responses`. The gRPC server (`runtime.serving.grpc`) serves the same
`InferenceService`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.routing import Route

from runtime.serving.extensions import TritonExtensions
from runtime.serving.handlers import MAX_BODY_BYTES, InferenceService
from runtime.serving.metrics import Metrics
from runtime.serving.responses import HEADER_LENGTH, V2JSONResponse, render_response
from runtime.serving.slot import Repository

__all__ = [
    "HEADER_LENGTH",
    "MAX_BODY_BYTES",
    "V2JSONResponse",
    "app_for",
    "create_app",
    "default_workers",
    "inference_service",
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
    service = inference_service(repo, is_ready, server_version, metrics, workers, access_log)
    return app_for(service)


def inference_service(
    repo: Repository,
    is_ready: Callable[[], bool],
    server_version: str = "0",
    metrics: Metrics | None = None,
    workers: int | None = None,
    access_log: bool = False,
) -> InferenceService:
    """What every protocol serves from: the HTTP app (`app_for`) and the gRPC servicer share one,
    so they share its worker threads, counts and routing."""
    return InferenceService(
        repo,
        is_ready,
        server_version,
        metrics or Metrics(),
        workers or default_workers(),
        access_log,
    )


def app_for(service: InferenceService) -> Starlette:
    """The Starlette app over `service`: the V2 routes and Triton's read-only extensions."""
    triton = TritonExtensions(service)
    model, version = "/v2/models/{model}", "/v2/models/{model}/versions/{version}"
    routes = [
        Route("/v2", service.server_metadata),
        Route("/v2/health/live", service.live),
        Route("/v2/health/ready", service.ready),
        Route("/v2/models/stats", triton.stats),  # before {model}: Triton's own ambiguity
        Route("/v2/repository/index", triton.index, methods=["POST"]),
        Route("/v2/repository/models/{model}/load", triton.load, methods=["POST"]),
        Route("/v2/repository/models/{model}/unload", triton.unload, methods=["POST"]),
        Route("/metrics", service.metrics_endpoint),
    ]
    for base in (model, version):
        routes += [
            Route(base, service.model_metadata),
            Route(f"{base}/ready", service.model_ready),
            Route(f"{base}/infer", service.infer, methods=["POST"]),
            Route(f"{base}/config", triton.config),
            Route(f"{base}/stats", triton.stats),
        ]
    return Starlette(routes=routes)
