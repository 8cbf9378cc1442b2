"""What grpcio's own server costs per request, with no model behind it: the floor under any
Python gRPC server of this protocol.

`python bench/grpc_floor.py PORT` serves Triton's `GRPCInferenceService` with a `ModelInfer`
that parses the request as the daemon does (the raw input as a numpy view) and answers one
fixed 1x10 FP32 output, on grpcio's synchronous server with the daemon's thread pool and message
limits. `protocols.py` runs it as a child process under the same closed-loop gRPC load as the
daemon and reads its CPU the same way, so in one run: daemon CPU ≈ bare ORT + this floor +
hotswap's own request path.

The one difference it must not have is the allocator's state. A daemon's heap has long grown
past its model's buffers, so glibc's adaptive thresholds no longer map and unmap a
request-sized block (about 3 page faults per 600 KB request in the daemon, `minflt` in
protocols' JSON); a fresh process with no model would, and pay ~1 ms of kernel time per request
for it. So the null server sets the thresholds (`mallopt`) where the daemon's have drifted to.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

LOGITS = np.zeros((1, 10), dtype=np.float32).tobytes()


class NullServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def ModelInfer(self, request: Any, context: grpc.ServicerContext) -> Any:
        np.frombuffer(request.raw_input_contents[0], dtype="<f4")  # what decoding must touch
        response = service_pb2.ModelInferResponse(
            model_name=request.model_name, model_version="1", id=request.id
        )
        response.outputs.add(name="logits", datatype="FP32", shape=[1, 10])
        response.raw_output_contents.append(LOGITS)
        return response


def settle_allocator() -> None:
    """Heap blocks up to 32 MiB, and freed memory kept up to 64 MiB (glibc's M_MMAP_THRESHOLD,
    M_TRIM_THRESHOLD): what a long-running daemon's adaptive thresholds reach."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallopt(-3, 32 * 1024 * 1024)
    libc.mallopt(-1, 64 * 1024 * 1024)


def serve(port: int) -> None:
    from runtime.serving.limits import MAX_BODY_BYTES

    settle_allocator()
    server = grpc.server(
        ThreadPoolExecutor(max_workers=16, thread_name_prefix="floor-grpc"),
        options=[
            ("grpc.max_receive_message_length", MAX_BODY_BYTES),
            ("grpc.max_send_message_length", MAX_BODY_BYTES),
        ],
    )
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(NullServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
