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
