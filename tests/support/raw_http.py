"""Abusive HTTP clients on a raw socket, and the peak memory of the process they talk to.

httpx cannot send half a header or keep streaming after the server answered; these can. Used by
the real-daemon tests of bounded inputs and slow headers.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class RawAnswer:
    status: int | None  # None: closed without an answer
    body: bytes
    sent: int  # body bytes the client got to send
    seconds: float


def exchange(
    port: int, head: bytes, chunks: Iterable[bytes] = (), timeout: float = 30.0
) -> RawAnswer:
    """Send `head` then each chunk while the server keeps reading, and read what it answers."""
    started = time.monotonic()
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        sock.settimeout(0)
        answer = b""
        for chunk in chunks:
            with contextlib.suppress(BlockingIOError):
                answer += sock.recv(65536)
            if answer:
                break  # answered early: stop sending
            try:
                sock.settimeout(timeout)
                sock.sendall(chunk)
                sock.settimeout(0)
            except OSError:  # reset or closed by the server mid-body
                break
            sent += len(chunk)
        answer += _read_rest(sock, timeout)
    return RawAnswer(
        _status(answer), answer.partition(b"\r\n\r\n")[2], sent, time.monotonic() - started
    )


def _read_rest(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data and _complete(data):
                break
    return data


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"content-length: *(\d+)", head, re.I)
    return match is not None and len(body) >= int(match.group(1))


def _status(answer: bytes) -> int | None:
    match = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    return int(match.group(1)) if match else None


def post_head(path: str, length: int | None, extra: dict[str, str] | None = None) -> bytes:
    """The request line and headers of a POST (chunked when `length` is None)."""
    headers = {"host": "127.0.0.1", "content-type": "application/json", **(extra or {})}
    if length is None:
        headers["transfer-encoding"] = "chunked"
    else:
        headers["content-length"] = str(length)
    lines = [f"POST {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(parts: Iterable[bytes]) -> Iterable[bytes]:
    """`parts` in chunked transfer encoding, made as they are sent."""
    for part in parts:
        yield b"%x\r\n%s\r\n" % (len(part), part)
    yield b"0\r\n\r\n"


class PeakMemory:
    """Peak resident memory of a process since the last `reset()` (Linux: VmHWM, which writing
    5 to /proc/PID/clear_refs sets back to the current RSS)."""

    def __init__(self, pid: int) -> None:
        self.proc = Path(f"/proc/{pid}")

    def _kib(self, field: str) -> int:
        text = (self.proc / "status").read_text()
        match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
        assert match, f"no {field} in {self.proc}/status"
        return int(match.group(1))

    def reset(self) -> int:
        """Start a measurement; returns the RSS now (bytes)."""
        (self.proc / "clear_refs").write_text("5")
        return self._kib("VmRSS") * 1024

    def peak(self) -> int:
        return self._kib("VmHWM") * 1024
