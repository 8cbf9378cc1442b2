"""Triton's `GRPCInferenceService` (KServe V2 over gRPC) over the same `InferenceService` as HTTP.

`runtime.serving.grpc.server` registers it. Health and metadata are answered on the gRPC thread;
`ModelInfer` goes to the service's inference worker pool and its shared path
(`InferenceService.execute`), so a request runs entirely on the instance active when it
started, is routed by the same canary/shadow split (its id from the `x-request-id` metadata, or
the request's `id`), and is counted in the same metrics and Triton statistics as over HTTP.
Model configuration, statistics and the repository index render the dicts HTTP returns, parsed
into Triton's messages (`json_format.ParseDict`: a field Triton does not have fails loudly).

Failures are gRPC status codes by whose mistake they are (`STATUS`): INVALID_ARGUMENT for a bad
request, NOT_FOUND for an unknown model or version, UNAVAILABLE for a model not ready; INTERNAL
only for the backend failing. Repository load/unload are refused with FAILED_PRECONDITION: what
is served changes only through desired state.
"""

from __future__ import annotations

import time
from typing import Any, NoReturn

import grpc
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from runtime.serving.extensions import REPOSITORY_REFUSAL
from runtime.serving.grpc import codec
from runtime.serving.handlers import EXTENSIONS, InferenceService
from runtime.serving.inference import InferFailure, Kind, Tensors, no_model, no_such_version
from runtime.serving.limits import largest_shapes
from runtime.serving.model_config import model_config
from runtime.serving.repository_index import repository_index
from runtime.serving.slot import Instance
from runtime.serving.stats import statistics
from runtime.serving.v2 import InferRequest

pb = service_pb2
STATUS: dict[Kind, grpc.StatusCode] = {
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "too-large": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "not-found": grpc.StatusCode.NOT_FOUND,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "backend": grpc.StatusCode.INTERNAL,
}


def _abort(context: grpc.ServicerContext, failure: InferFailure) -> NoReturn:
    context.abort(STATUS[failure.kind], failure.message)
    raise AssertionError("context.abort returned")  # it raises; this tells the type checker


def request_id(context: grpc.ServicerContext, request: Any) -> str | None:
    """The id canary/shadow routing keys on: `x-request-id` metadata, else the request's id."""
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id" and isinstance(value, str) and value:
            return value
    return request.id or None


class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, service: InferenceService) -> None:
        self.service = service

    # --- health and metadata, on the gRPC thread ---------------------------------------------

    def ServerLive(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.ServerReadyResponse(ready=self.service.is_ready())

    def ServerMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.ServerMetadataResponse(
            name="hotswap", version=self.service.server_version, extensions=EXTENSIONS
        )

    def _serving(self, name: str, version: str) -> Instance | InferFailure:
        """The active instance of `name` (of `version`, unless empty), or why there is none."""
        slot = self.service.repo.get(name)
        if slot is None:
            return no_model(self.service.repo, name)
        inst = slot.active
        if inst is None:
            return InferFailure("unavailable", f"model {name!r} is not ready")
        if version and version != inst.version:
            return no_such_version(name, version, inst.version)
        return inst

    def _instance(self, name: str, version: str, context: grpc.ServicerContext) -> Instance:
        inst = self._serving(name, version)
        if isinstance(inst, InferFailure):
            _abort(context, inst)
        return inst

    def ModelReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        # Not an error when not ready: readiness probes poll this and want a plain answer.
        ready = isinstance(self._serving(request.name, request.version), Instance)
        return pb.ModelReadyResponse(ready=ready)

    def ModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        inst = self._instance(request.name, request.version, context)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=request.name,
            versions=[inst.version],
            platform=str(inst.meta.get("platform", "onnxruntime_onnx")),
            inputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in inst.session.inputs],
            outputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in inst.session.outputs],
        )  # fmt: skip

    # --- Triton's read-only extensions --------------------------------------------------------

    def ModelConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        inst = self._instance(request.name, request.version, context)
        config = json_format.ParseDict(
            model_config(request.name, inst), model_config_pb2.ModelConfig()
        )
        return pb.ModelConfigResponse(config=config)

    def ModelStatistics(self, request: Any, context: grpc.ServicerContext) -> Any:
        service = self.service
        try:
            body = statistics(service.repo, service.stats, request.name, request.version)
        except LookupError as e:
            _abort(context, InferFailure("not-found", str(e.args[0])))
        return json_format.ParseDict(body, pb.ModelStatisticsResponse())

    def RepositoryIndex(self, request: Any, context: grpc.ServicerContext) -> Any:
        entries = repository_index(self.service.repo, request.ready)
        return pb.RepositoryIndexResponse(
            models=[pb.RepositoryIndexResponse.ModelIndex(**e) for e in entries]
        )

    def RepositoryModelLoad(self, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, REPOSITORY_REFUSAL.format(action="load"))

    def RepositoryModelUnload(self, request: Any, context: grpc.ServicerContext) -> Any:
        refusal = REPOSITORY_REFUSAL.format(action="unload")
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, refusal)

    # --- inference, on the service's worker pool ---------------------------------------------

    def ModelInfer(self, request: Any, context: grpc.ServicerContext) -> Any:
        name = request.model_name

        def decode(inst: Instance) -> InferRequest:
            largest = largest_shapes(inst.session.inputs, inst.meta)
            return codec.decode_request(request, inst.session.inputs, inst.session.outputs, largest)

        def encode(inst: Instance, req: InferRequest, outputs: Tensors) -> Any:
            return codec.encode_response(name, inst.version, req, outputs)

        service, version, rid = self.service, request.model_version, request_id(context, request)
        try:
            future = service.pool_for(name).submit(
                service.execute, name, version, rid, decode, encode, time.perf_counter()
            )
        except RuntimeError:  # the pool is shut down: the daemon is stopping
            _abort(context, InferFailure("unavailable", "the server is shutting down"))
        try:
            return future.result()
        except InferFailure as e:
            _abort(context, e)
