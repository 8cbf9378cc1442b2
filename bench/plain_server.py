"""A plain single-model KServe V2 server: the baseline that hotswap replaces.

One ONNX Runtime session loaded at start from the path given on the command line, served over
the same V2 inference API as the daemon (the daemon's own request codec and response rendering,
JSON or binary tensors; the same ORT session settings; inference in a pool of worker threads
sized like the daemon's), and nothing else: no desired state, no journal,
no second version. Updating it is the classic practice: copy the new model file over the old
one and restart the process (what `systemctl restart` does). bench/swap_under_load.py measures
what that costs in failed requests and unavailability.

    python bench/plain_server.py MODEL.onnx [--port 8001] [--name classifier] [--threads 1]
                                            [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make the repo's runtime package importable
    sys.path.insert(0, str(REPO))

import onnxruntime as ort  # noqa: E402
import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from runtime.backends.base import BackendError  # noqa: E402
from runtime.backends.onnxruntime import OnnxRuntimeSession  # noqa: E402
from runtime.serving.server import HEADER_LENGTH  # noqa: E402
from runtime.serving.server import render_response as render  # noqa: E402
from runtime.serving.v2 import (  # noqa: E402
    BadRequest,
    decode_request,
    encode_response,
    split_body,
)

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def load_session(model: Path, threads: int) -> ort.InferenceSession:
    """The daemon's session settings: extended graph optimisation (the daemon does it offline at
    build time and loads the result with optimisation off: the same graph), `threads` intra-op
    threads, one inter-op thread."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])


def create_app(model: Path, name: str, threads: int, workers: int) -> Starlette:
    raw = load_session(model, threads)
    version = str(raw.get_modelmeta().version)
    session = OnnxRuntimeSession(raw)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="plain-infer")

    async def ready(_: Request) -> Response:
        return JSONResponse({"ready": True})

    def run(body_bytes: bytes, header_length: str | None) -> Response:
        try:
            header, binary = split_body(body_bytes, header_length)
            try:
                body = json.loads(header)
            except ValueError as e:
                raise BadRequest(f"invalid JSON: {e}") from e
            req = decode_request(body, session.inputs, session.outputs, binary)
            return render(encode_response(name, version, req, session.infer(req.feeds)))
        except BadRequest as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        except BackendError as e:
            return JSONResponse({"error": str(e)}, status_code=500)

    async def infer(request: Request) -> Response:
        if request.path_params["model"] != name:
            return JSONResponse({"error": "unknown model"}, status_code=404)
        body_bytes = await request.body()
        return await asyncio.get_running_loop().run_in_executor(
            pool, run, body_bytes, request.headers.get(HEADER_LENGTH)
        )

    return Starlette(
        routes=[
            Route("/v2/health/live", ready),
            Route("/v2/health/ready", ready),
            Route("/v2/models/{model}/infer", infer, methods=["POST"]),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="the ONNX file to serve")
    parser.add_argument("--host", default="127.0.0.1", help="loopback only (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--name", default="classifier", help="model name in the URL")
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads")
    parser.add_argument("--workers", type=int, default=1, help="inference worker threads")
    args = parser.parse_args(argv)
    if args.host not in LOOPBACK:
        parser.error("this benchmark server binds loopback addresses only")
    app = create_app(args.model, args.name, max(1, args.threads), max(1, args.workers))
    uvicorn.run(
        app, host=args.host, port=args.port, log_level="warning", access_log=False, lifespan="off"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
