"""HTTP connections that cannot be held open by a client that never finishes its headers.

uvicorn's h11 protocol arms its keep-alive timer only after a response, and any byte received
cancels it: a client that sends half a request line (or one header byte a minute) holds its
connection, and a file descriptor, for ever. `guarded_h11(timeout_s)` is uvicorn's H11Protocol
with one timer more: from the moment a connection can take a request (it was opened, or the
previous response was sent) the request's headers must be complete within `timeout_s`, or the
connection gets a 408 and is closed. The header size is bounded by h11 itself
(`MAX_HEADER_BYTES`, passed to uvicorn as `h11_max_incomplete_event_size`: larger headers get
a 400). A body must then keep coming: one that stops for `BODY_IDLE_S`, or that after
`BODY_GRACE_S` has come slower on average than `MIN_BODY_RATE`, gets a 408 and the connection is
closed. Without that, a client sending a byte a second holds a connection, a buffer and a
coroutine for as long as the largest body takes at that rate (days). Watched here, by one check
a second per body in flight, rather than by a timeout around each chunk the app reads (a task
per chunk, on the request path). Its size is bounded per model (runtime.serving.body).

Used by reconciler.cli.daemon to build the uvicorn config; it pins the h11 implementation
(httptools, when installed, is not guarded).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0
MAX_HEADER_BYTES = 16 * 1024
BODY_IDLE_S = 10.0  # no byte for this long: the client is gone or stalling
BODY_GRACE_S = 10.0  # a slow start (a link waking up) is fine for this long
MIN_BODY_RATE = 16 * 1024  # bytes/s on average after the grace: a thin link still passes
BODY_CHECK_S = 1.0

_TIMEOUT_BODY = b"request headers not complete in time\n"
_SLOW_BODY = b"request body stalled or too slow\n"


def _timeout_response(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    )


_TIMEOUT_RESPONSE = _timeout_response(_TIMEOUT_BODY)


class HeaderTimeoutH11Protocol(H11Protocol):
    """H11Protocol whose connections close when a request's headers take too long."""

    header_timeout_s: float = HEADER_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._received_since_armed = False
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_started = self._body_last = 0.0
        self._body_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._stop_body_watch()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._received_since_armed = True
        if self._body_timer is not None:
            self._body_last = self.loop.time()
            self._body_bytes += len(data)
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # a request's headers are complete
            self._disarm()
        if self.conn.their_state is h11.SEND_BODY:
            if self._body_timer is None:
                self._watch_body()
        else:
            self._stop_body_watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm()  # the next request's headers are on the clock

    def _arm(self) -> None:
        self._disarm()
        self._received_since_armed = False
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self._received_since_armed:  # part of a request came: say why it is closed
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()

    # -- the body's pace ---------------------------------------------------------------------
    def _watch_body(self) -> None:
        self._body_started = self._body_last = self.loop.time()
        self._body_bytes = 0
        self._body_timer = self.loop.call_later(BODY_CHECK_S, self._check_body)

    def _stop_body_watch(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _check_body(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        now = self.loop.time()
        elapsed = now - self._body_started
        idle = now - self._body_last >= BODY_IDLE_S
        slow = elapsed > BODY_GRACE_S and self._body_bytes / elapsed < MIN_BODY_RATE
        if not (idle or slow):
            self._body_timer = self.loop.call_later(BODY_CHECK_S, self._check_body)
            return
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):  # nothing of an answer sent
            self.transport.write(_timeout_response(_SLOW_BODY))
        self.transport.close()


def guarded_h11(timeout_s: float = HEADER_TIMEOUT_S) -> type[HeaderTimeoutH11Protocol]:
    """The protocol class for `uvicorn.Config(http=...)`, with this header timeout."""
    return type("HeaderTimeoutH11", (HeaderTimeoutH11Protocol,), {"header_timeout_s": timeout_s})
