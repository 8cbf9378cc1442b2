"""A fake systemd notify socket: a real AF_UNIX datagram socket the test reads, as systemd would."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable


class NotifySocket:
    """Bound in the abstract namespace (no path-length limit, nothing left on disk)."""

    def __init__(self) -> None:
        self.address = f"@hotswap-test-{os.getpid()}-{time.monotonic_ns()}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.address[1:])
        self.messages: list[dict[str, str]] = []

    def env(self, watchdog_s: float | None = None) -> dict[str, str]:
        env = {"NOTIFY_SOCKET": self.address}
        if watchdog_s is not None:
            env["WATCHDOG_USEC"] = str(int(watchdog_s * 1e6))
        return env

    def receive(self, timeout: float) -> dict[str, str] | None:
        """The next message as KEY -> value, or None when none came within `timeout`."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return None
        message = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.messages.append(message)
        return message

    def wait_for(
        self, predicate: Callable[[dict[str, str]], bool], timeout: float, what: str
    ) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            if message is not None and predicate(message):
                return message
        raise AssertionError(f"no {what} within {timeout}s; got {self.messages[-10:]}")

    def pings(self, within: float) -> int:
        """WATCHDOG=1 messages received in the next `within` seconds."""
        count, deadline = 0, time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            count += bool(message and message.get("WATCHDOG") == "1")
        return count

    def drain(self) -> None:
        """Drop what was sent so far (by a process or loop that has stopped)."""
        while self.receive(0.001) is not None:
            pass

    def close(self) -> None:
        self.sock.close()
