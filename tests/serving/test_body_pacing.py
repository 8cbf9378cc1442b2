"""A request body must keep coming: a stalled or trickling one gets a 408, a steady one is read.
On starlette's Request with a scripted ASGI receive and a real event loop (no sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from starlette.requests import Request
from starlette.responses import Response

from runtime.serving import body as body_module
from runtime.serving.body import read_body
from runtime.serving.limits import RequestLimits

LIMITS = RequestLimits(inputs=(), json_bytes=1 << 20, binary_bytes=0, values=1 << 20)


def _request(chunks: Sequence[tuple[float, bytes]]) -> Request:
    """A POST whose body arrives as `chunks`: (seconds to wait first, bytes)."""
    script = list(chunks)

    async def receive() -> dict[str, object]:
        if not script:
            return {"type": "http.request", "body": b"", "more_body": False}
        delay, data = script.pop(0)
        await asyncio.sleep(delay)
        return {"type": "http.request", "body": data, "more_body": True}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
    return Request(scope, receive)


def _read(chunks: Sequence[tuple[float, bytes]]) -> bytearray | Response:
    return asyncio.run(read_body(_request(chunks), "m", LIMITS, 1 << 20))


@pytest.fixture(autouse=True)
def fast_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(body_module, "BODY_IDLE_S", 0.2)
    monkeypatch.setattr(body_module, "BODY_GRACE_S", 0.3)
    monkeypatch.setattr(body_module, "MIN_BODY_RATE", 1000)


def test_a_steady_body_is_read_whole() -> None:
    got = _read([(0.05, b"x" * 400)] * 10)  # 8000 B/s, each gap under the idle limit
    assert isinstance(got, bytearray) and len(got) == 4000


def test_a_body_that_stops_gets_a_408_and_the_connection_closed() -> None:
    got = _read([(0.0, b"{"), (1.0, b"}")])
    assert isinstance(got, Response) and got.status_code == 408
    assert got.headers["connection"] == "close"
    assert b"stalled" in got.body and b"after 1 bytes" in got.body


def test_a_body_trickling_under_the_rate_after_the_grace_gets_a_408() -> None:
    got = _read([(0.1, b"x")] * 20)  # 10 B/s: every gap is short, the average is not
    assert isinstance(got, Response) and got.status_code == 408
    assert b"too slow" in got.body
