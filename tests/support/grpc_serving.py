"""In-process gRPC serving for the unit tests: a small session of any datatype, and the gRPC
server (and the HTTP app, in-process) over one `InferenceService` on a free loopback port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import anyio.from_thread
import grpc
import httpx
import numpy as np
from tritonclient.grpc import service_pb2_grpc

from runtime.backends.base import BackendError, TensorInfo
from runtime.serving.grpc.server import GrpcServer
from runtime.serving.handlers import InferenceService
from runtime.serving.server import app_for, inference_service
from runtime.serving.slot import Instance, Repository


class DoublingSession:
    """y = 2 * x for an input `x` of `datatype` and shape (-1, 4); `gate`, when given, holds the
    first inference until it is set (to keep one request in flight while others pass); `fail`
    raises a BackendError."""

    def __init__(self, datatype: str = "FP32", width: int = 4) -> None:
        self.inputs = (TensorInfo("x", datatype, (-1, width)),)
        self.outputs = (TensorInfo("y", datatype, (-1, width)),)
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.fail = False
        self.released = False

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        first = not self.entered.is_set()
        self.entered.set()
        if first and self.gate is not None:
            assert self.gate.wait(30), "the test never released the gate"
        if self.fail:
            raise BackendError("the device fell over")
        x = feeds["x"]
        return {"y": (x * 2).astype(x.dtype) if x.dtype.kind != "b" else ~x}

    def release(self) -> None:
        self.released = True


def instance(version: str, session: Any = None, name: str = "m", **meta: Any) -> Instance:
    return Instance(name, version, session or DoublingSession(), dict(meta), healthy=True)


@dataclass
class Served:
    repo: Repository
    service: InferenceService
    server: GrpcServer
    stub: Any  # service_pb2_grpc.GRPCInferenceServiceStub
    url: str  # host:port for tritonclient.grpc
    http: Any  # call(method, path, **kw) -> httpx.Response, in-process


@contextmanager
def grpc_served(repo: Repository, ready: bool = True, workers: int = 2) -> Iterator[Served]:
    service = inference_service(repo, lambda: ready, "9.9", workers=workers)
    server = GrpcServer(service, "127.0.0.1", 0)
    server.start()
    channel = grpc.insecure_channel(server.address)
    transport = httpx.ASGITransport(app=app_for(service), raise_app_exceptions=False)
    client = httpx.AsyncClient(transport=transport, base_url="http://hotswap.test")
    try:
        with anyio.from_thread.start_blocking_portal() as portal:

            def http(method: str, path: str, **kw: Any) -> httpx.Response:
                return portal.call(lambda: client.request(method, path, **kw))

            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            yield Served(repo, service, server, stub, server.address, http)
            portal.call(client.aclose)
    finally:
        channel.close()
        server.stop(grace=5)
        service.pool.shutdown(wait=False)
