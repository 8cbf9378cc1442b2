"""The header timeout of the daemon's HTTP connections, on uvicorn's protocol with a fake
transport and a real event loop (no sockets, no server; the real daemon's side is in
tests/e2e/test_bounded_inputs_e2e.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from uvicorn.config import Config
from uvicorn.server import ServerState

from runtime.serving import connections
from runtime.serving.connections import guarded_h11

TIMEOUT_S = 0.05


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


async def _ok(_: Any) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def _connection(*sent: bytes, wait_s: float) -> FakeTransport:
    config = Config(Starlette(routes=[Route("/", _ok)]), lifespan="off", log_level="warning")
    protocol = guarded_h11(TIMEOUT_S)(config=config, server_state=ServerState(), app_state={})
    transport = FakeTransport()
    protocol.connection_made(transport)
    for data in sent:
        protocol.data_received(data)
    await asyncio.sleep(wait_s)
    return transport


@pytest.mark.parametrize(
    "sent, answer",
    [
        ((b"GET / HTTP/1.1\r\nhost: x\r\n",), b"HTTP/1.1 408 "),  # half a request: told why
        ((), b""),  # nothing at all: closed silently
    ],
)
def test_a_request_whose_headers_do_not_come_in_time_is_closed(
    sent: tuple[bytes, ...], answer: bytes
) -> None:
    transport = asyncio.run(_connection(*sent, wait_s=TIMEOUT_S * 4))
    assert transport.closed
    assert transport.written.startswith(answer) and (answer or transport.written == b"")


def test_complete_headers_are_served_and_the_next_request_is_timed_again() -> None:
    transport = asyncio.run(_connection(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", wait_s=TIMEOUT_S / 2))
    assert transport.written.startswith(b"HTTP/1.1 200 ") and not transport.closed
    later = asyncio.run(_connection(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", wait_s=TIMEOUT_S * 4))
    assert later.written.startswith(b"HTTP/1.1 200 ") and later.closed  # idle after it: closed


# -- the body's pace -----------------------------------------------------------------------------
async def _echo(request: Any) -> PlainTextResponse:
    return PlainTextResponse(str(len(await request.body())))


async def _post(length: int, chunks: list[tuple[float, bytes]], wait_s: float) -> FakeTransport:
    """A POST of `length` body bytes, sent as `chunks` ((seconds to wait first, bytes))."""
    app = Starlette(routes=[Route("/", _echo, methods=["POST"])])
    config = Config(app, lifespan="off", log_level="warning")
    protocol = guarded_h11(TIMEOUT_S * 100)(config=config, server_state=ServerState(), app_state={})
    transport = FakeTransport()
    protocol.connection_made(transport)
    protocol.data_received(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % length)
    for delay, data in chunks:
        await asyncio.sleep(delay)
        if transport.closed:
            break
        protocol.data_received(data)
    await asyncio.sleep(wait_s)
    return transport


@pytest.fixture
def fast_body_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connections, "BODY_CHECK_S", 0.02)
    monkeypatch.setattr(connections, "BODY_IDLE_S", 0.2)
    monkeypatch.setattr(connections, "BODY_GRACE_S", 0.3)
    monkeypatch.setattr(connections, "MIN_BODY_RATE", 1000)


def test_a_steady_body_is_read_whole(fast_body_clock: None) -> None:
    transport = asyncio.run(_post(4000, [(0.05, b"x" * 400)] * 10, wait_s=0.1))  # 8000 B/s
    assert transport.written.startswith(b"HTTP/1.1 200 ") and transport.written.endswith(b"4000")
    assert not transport.closed


def test_a_body_that_stops_gets_a_408_and_the_connection_closed(fast_body_clock: None) -> None:
    transport = asyncio.run(_post(100, [(0.0, b"{")], wait_s=0.5))
    assert transport.closed and transport.written.startswith(b"HTTP/1.1 408 ")
    assert b"stalled or too slow" in transport.written


def test_a_body_trickling_under_the_rate_after_the_grace_gets_a_408(fast_body_clock: None) -> None:
    transport = asyncio.run(_post(100, [(0.1, b"x")] * 20, wait_s=0.1))  # 10 B/s, short gaps
    assert transport.closed and transport.written.startswith(b"HTTP/1.1 408 ")
