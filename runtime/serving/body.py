"""Reading a request body no larger than the model can take (runtime.serving.limits).

Called by `InferenceService.infer` on the event loop. The limit is known before the first byte:
JSON, or with binary tensor data a JSON header (its Inference-Header-Content-Length, itself no
larger than the JSON limit) and the exact bytes of the largest inputs. A declared Content-Length
over it is refused at once, with the connection closed so that the client's body is not read
just to be thrown away; a chunked body (or one longer than declared) is counted as it streams
and refused at the limit. The body lands in one bytearray, not in a list of chunks joined at
the end: reading never holds it twice, and nothing is allocated for bytes not yet received.

Its pace is watched by the connection (runtime.serving.connections): a body that stalls or
trickles gets a 408 there and the connection is closed; reading here then ends as a disconnect.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from runtime.serving.limits import RequestLimits
from runtime.serving.responses import HEADER_LENGTH, error_response


def _number(value: str | None) -> int | None:
    # isascii: '²' and other digits of other scripts pass isdigit() but not int()
    if value is None or not (value.isascii() and value.isdigit()):
        return None
    return int(value)


def _too_large(message: str) -> Response:
    response = error_response(413, message)
    response.headers["connection"] = "close"
    return response


def body_limit(request: Request, model: str, limits: RequestLimits, cap: int) -> int | Response:
    """The most bytes this request's body may have, or the 413 its headers already earn."""
    header_length = _number(request.headers.get(HEADER_LENGTH))
    if header_length is not None:  # a longer header is refused once read (or a 400 if absent)
        header_length = min(header_length, limits.json_bytes)
    encoding = "JSON" if request.headers.get(HEADER_LENGTH) is None else "binary tensor data"
    limit = min(limits.body_bytes(header_length), cap)
    declared = _number(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        return _too_large(
            f"request body of {declared} bytes exceeds {limit}, the most model {model!r} can"
            f" take as {encoding} (inputs at their largest: {limits.describe()})" + _hint(encoding)
        )
    return limit


def _hint(encoding: str) -> str:
    if encoding == "JSON":
        return "; send large tensors as binary tensor data (Inference-Header-Content-Length)"
    return ""


async def read_body(
    request: Request, model: str, limits: RequestLimits, cap: int
) -> bytearray | Response:
    """The body, or a 413 response as soon as it is over the limit."""
    limit = body_limit(request, model, limits, cap)
    if isinstance(limit, Response):
        return limit
    body = bytearray()
    try:
        async for chunk in request.stream():
            if len(body) + len(chunk) > limit:
                return _too_large(
                    f"request body exceeds {limit} bytes, the most model {model!r} can take"
                    f" (inputs at their largest: {limits.describe()})"
                )
            body += chunk  # grows in place (a large block is remapped, not copied)
    except ClientDisconnect:  # gone, or closed by the connection's pace check: nobody to answer
        response = error_response(408, "the client stopped sending the request body")
        response.headers["connection"] = "close"
        return response
    return body
