"""V2 responses as Starlette renders them: errors, JSON that may carry NaN, and the binary
tensor extension (a JSON header followed by raw output bytes).

Shared by the handlers and by bench/plain_server.py, the baseline the benchmarks compare
against, so both answer byte for byte alike.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse, Response

from runtime.serving.v2 import EncodedResponse

HEADER_LENGTH = "Inference-Header-Content-Length"
# On a 503 (a model not loaded yet, a sequential swap): when to ask again, so clients and load
# balancers back off for a moment instead of hammering or giving up.
RETRY_AFTER = {"Retry-After": "1"}


class V2JSONResponse(JSONResponse):
    # Model outputs can legitimately hold NaN/Inf; Python's json writes them as NaN/Infinity,
    # which every mainstream client parses, instead of failing the response with a 500.
    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), allow_nan=True).encode()


def error_response(status: int, message: str) -> JSONResponse:
    headers = RETRY_AFTER if status == 503 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


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
