"""A fake model registry: a real HTTP server on 127.0.0.1 that can misbehave on purpose.

Serves files from a dict, with Range support (206 / 416), and per path a fault mode: drop the
connection after N bytes (for the first `drops` requests, then serve normally so a resume can
succeed), flip a byte, stream forever, stall past the client's read timeout, answer a fixed
status, ignore Range, lie in Content-Length, redirect. Every loop is bounded: an endless stream
stops after `ENDLESS_LIMIT` bytes or when the client goes away, a stall ends at `stall` seconds
or at `release()` or shutdown. Records every request (path, Range header) for assertions.

    with FakeRegistry({"/m.onnx": Entry(data, drop_after=1000)}) as reg:
        url = reg.url("/m.onnx")
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ENDLESS_LIMIT = 64 << 20
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class Entry:
    data: bytes = b""
    status: int | None = None  # answer this status (no body) instead of the file
    drop_after: int | None = None  # send this many body bytes, then close the socket
    drops: int = 1  # how many requests drop or stall (then the file is served normally)
    corrupt: bool = False  # flip one byte in the middle
    endless: bool = False  # stream zeros without a length until the client leaves
    stall: float = 0.0  # after headers and `stall_after` body bytes, sleep this long, close
    stall_after: int = 0
    ignore_range: bool = False  # always 200 with the whole file
    lie_length: int = 0  # Content-Length off by this many bytes
    redirect: str | None = None  # 302 to this URL (absolute, or a path on this server)


@dataclass
class Request:
    path: str
    range: str | None
    user_agent: str | None


@dataclass
class FakeRegistry:
    files: dict[str, Entry] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._unstall = threading.Event()
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                registry._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-registry",
            daemon=True,
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ranges(self, path: str) -> list[str | None]:
        with self._lock:
            return [r.range for r in self.requests if r.path == path]

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.path == path)

    def __enter__(self) -> FakeRegistry:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def release(self) -> None:
        """End every stall now (the stalled answers close their connections)."""
        self._unstall.set()

    def close(self) -> None:
        self._stop.set()
        self._unstall.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    # -- the handler -----------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?", 1)[0]
        rng = h.headers.get("Range")
        with self._lock:
            self.requests.append(Request(path, rng, h.headers.get("User-Agent")))
            n = self._counts[path] = self._counts.get(path, 0) + 1
            entry = self.files.get(path)
        h.close_connection = True
        if entry is None:
            return self._head(h, 404, 0)
        if entry.status is not None:
            return self._head(h, entry.status, 0)
        if entry.redirect is not None:
            target = entry.redirect if "://" in entry.redirect else self.url(entry.redirect)
            return self._head(h, 302, 0, {"Location": target})
        if entry.endless:
            return self._endless(h)
        data = bytearray(entry.data)
        if entry.corrupt and data:
            data[len(data) // 2] ^= 0xFF
        start, status, headers = 0, 200, {}
        m = _RANGE.match(rng or "")
        if m and not entry.ignore_range:
            start = int(m.group(1))
            if start >= len(data):
                return self._head(h, 416, 0, {"Content-Range": f"bytes */{len(data)}"})
            end = int(m.group(2)) + 1 if m.group(2) else len(data)
            data_end = min(end, len(data))
            headers["Content-Range"] = f"bytes {start}-{data_end - 1}/{len(data)}"
            status, data = 206, data[start:data_end]
        body = bytes(data)
        self._head(h, status, len(body) + entry.lie_length, headers)
        if entry.drop_after is not None and n <= entry.drops:
            self._send(h, body[: max(0, entry.drop_after - start)])
            return self._drop(h)
        if entry.stall and n <= entry.drops:
            self._send(h, body[: entry.stall_after])
            self._unstall.wait(entry.stall)
            return self._drop(h)
        self._send(h, body)

    def _head(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        length: int | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        h.send_response(status)
        h.send_header("Connection", "close")
        if length is not None:
            h.send_header("Content-Length", str(length))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()

    def _send(self, h: BaseHTTPRequestHandler, data: bytes) -> bool:
        try:
            h.wfile.write(data)
            h.wfile.flush()
            return True
        except OSError:  # the client went away
            return False

    def _drop(self, h: BaseHTTPRequestHandler) -> None:
        with contextlib.suppress(OSError):
            h.connection.shutdown(socket.SHUT_RDWR)

    def _endless(self, h: BaseHTTPRequestHandler) -> None:
        self._head(h, 200, None)  # no length: the body runs until the connection closes
        chunk = b"\0" * (64 << 10)
        sent = 0
        while sent < ENDLESS_LIMIT and not self._stop.is_set():
            if not self._send(h, chunk):
                return
            sent += len(chunk)
