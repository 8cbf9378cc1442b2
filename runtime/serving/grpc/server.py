"""The gRPC server's life: bind, serve beside HTTP, stop gracefully.

`reconciler.cli.daemon` makes one over the `InferenceService` the HTTP app serves, `start`s it
before the HTTP server runs (an address already taken fails the start, loudly, as for HTTP) and
`stop`s it when HTTP has stopped: new calls are refused from then on, calls in flight get
`grace` seconds to finish. grpcio's synchronous server, because inference runs on the service's
worker threads anyway; its own threads only decode messages and wait, so there are a few per
inference worker (concurrent calls beyond them wait in grpc's queue, not refused).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
from tritonclient.grpc import service_pb2_grpc

from runtime.serving.grpc.servicer import Servicer
from runtime.serving.handlers import MAX_BODY_BYTES, InferenceService

STOP_GRACE_S = 30.0  # for requests in flight at shutdown; a long inference is seconds


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GrpcServer:
    def __init__(self, service: InferenceService, host: str, port: int) -> None:
        self.service = service
        self.host = host
        self.port = port  # 0: any free port, the bound one is here after `start`
        self._server: grpc.Server | None = None

    @property
    def address(self) -> str:
        return address(self.host, self.port)

    def start(self) -> None:
        """Bind and serve; OSError when the address cannot be bound."""
        threads = max(16, 4 * (self.service.workers))
        server = grpc.server(
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hotswap-grpc"),
            options=[
                ("grpc.max_receive_message_length", MAX_BODY_BYTES),
                ("grpc.max_send_message_length", MAX_BODY_BYTES),
                ("grpc.so_reuseport", 0),  # a second daemon on the same port must fail, not share
            ],
        )
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(self.service), server)
        try:
            bound = server.add_insecure_port(self.address)
        except RuntimeError as e:
            raise OSError(f"cannot listen for gRPC on {self.address}: {e}") from e
        if not bound:
            raise OSError(f"cannot listen for gRPC on {self.address}")
        self.port = bound
        server.start()
        self._server = server

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Refuse new calls now; wait up to `grace` seconds for those in flight."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace).wait()
