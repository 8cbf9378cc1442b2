"""systemd's notify protocol: READY, STATUS, WATCHDOG and STOPPING, sent by the daemon itself.

The daemon's wiring (`reconciler.cli.daemon`) builds one `Notifier` from the environment
systemd gives a `Type=notify` service and hands it to the controller, whose reconcile loop
pings the watchdog after every pass and every completed idle wait, so a wedged loop stops the
pings and systemd restarts the service (restore then serves the last promoted versions).

The protocol is a few lines (sd_notify(3)): one AF_UNIX datagram of newline-separated
`KEY=value` assignments to `$NOTIFY_SOCKET`, a name starting with '@' meaning the abstract
namespace. Without the variable every call is a no-op, so the daemon runs the same outside
systemd; a send that fails is ignored, as sd_notify's callers do, because a supervisor that went
away must not stop a device from serving.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Mapping


class Notifier:
    def __init__(
        self,
        address: str | None,
        watchdog_usec: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`address`: $NOTIFY_SOCKET (None: not under systemd); `watchdog_usec`: the watchdog
        timeout systemd enforces (None: no watchdog)."""
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._clock = clock
        self._lock = threading.Lock()
        self._last_ping = float("-inf")
        self._last_status: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """The notifier systemd's variables describe; WATCHDOG_PID (when set) names the process
        the watchdog is for, so a child that inherited the variables does not ping for us."""
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET") or None
        usec = env.get("WATCHDOG_USEC", "")
        for_us = env.get("WATCHDOG_PID", str(os.getpid())) == str(os.getpid())
        watchdog = int(usec) if usec.isdigit() and int(usec) > 0 and for_us else None
        return cls(address, watchdog)

    @property
    def ping_every_s(self) -> float | None:
        """Half the watchdog timeout, as systemd recommends; None without a watchdog."""
        if self.address is None or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2e6

    def send(self, **fields: str) -> bool:
        """One datagram of KEY=value lines; True when it was sent."""
        if self.address is None:
            return False
        message = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.connect(target)
                s.sendall(message)
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None) -> None:
        fields = {"READY": "1", "MAINPID": str(os.getpid())}
        if status:
            fields["STATUS"] = status
        self.send(**fields)

    def status(self, text: str) -> None:
        """STATUS=, sent only when the line changed (the loop calls it on every status write)."""
        line = " ".join(text.split())
        with self._lock:
            if line == self._last_status:
                return
            self._last_status = line
        self.send(STATUS=line)

    def watchdog(self) -> None:
        """WATCHDOG=1, at most once per `ping_every_s` however often the loop calls it."""
        every = self.ping_every_s
        if every is None:
            return
        now = self._clock()
        with self._lock:
            if now - self._last_ping < every / 2:
                return
            self._last_ping = now
        self.send(WATCHDOG="1")

    def stopping(self) -> None:
        self.send(STOPPING="1", STATUS="stopping")
