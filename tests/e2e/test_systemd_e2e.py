"""The daemon under a supervisor that acts as systemd does for `Type=notify` + `WatchdogSec=`:
READY=1 only once the restored model serves, WATCHDOG=1 from the loop, STOPPING=1 on SIGTERM; a
wedged loop stops the pings, the supervisor kills it (-9) and starts it again, and the restart
restores the last good version."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from tests.support.daemon import Daemon
from tests.support.kit import Kit
from tests.support.sdnotify import NotifySocket

WATCHDOG_S = 1.0  # WatchdogSec=1: a ping every 0.5 s


@pytest.fixture
def sock() -> Iterator[NotifySocket]:
    s = NotifySocket()
    yield s
    s.close()


def _start_ready(d: Daemon, sock: NotifySocket, crashpoint: str | None = None) -> None:
    env = sock.env(watchdog_s=WATCHDOG_S)
    if crashpoint:
        env["HOTSWAP_CRASHPOINT"] = crashpoint
    d.start(env=env)
    ready = sock.wait_for(lambda m: m.get("READY") == "1", 60, "READY=1")
    assert ready["MAINPID"] == str(d.proc.pid if d.proc else None)


def _watchdog_fired(sock: NotifySocket, timeout: float) -> bool:
    """What systemd does: True when no WATCHDOG=1 came for WatchdogSec (checked for `timeout`)."""
    last, deadline = time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = sock.receive(0.1)
        if message and message.get("WATCHDOG") == "1":
            last = time.monotonic()
        if time.monotonic() - last > WATCHDOG_S:
            return True
    return False


def test_a_wedged_loop_is_killed_and_the_restart_restores_the_last_good_version(
    kit: Kit, daemon, sock: NotifySocket
) -> None:
    d: Daemon = daemon()
    kit.write(d.desired, "1")
    _start_ready(d, sock)
    d.wait_version("1")
    assert not _watchdog_fired(sock, timeout=3 * WATCHDOG_S)  # the loop pings while it runs
    d.wait_for(lambda: d.status()["models"][0]["state"] == "in sync", what="v1 promoted")
    sock.drain()
    assert d.proc is not None
    d.proc.send_signal(signal.SIGTERM)
    sock.wait_for(lambda m: m.get("STOPPING") == "1", 30, "STOPPING=1")
    assert d.wait_exit() == 0

    # Restarted with the loop wedged at its first pass: restore has run, the device serves
    # before it says ready, and then no ping comes.
    _start_ready(d, sock, crashpoint="loop:pass=block")
    assert d.served_version() == "1"
    assert _watchdog_fired(sock, timeout=10 * WATCHDOG_S)
    d.kill9()  # what the watchdog ends in (WatchdogSignal=, then SIGKILL); then Restart=on-failure

    _start_ready(d, sock)
    assert d.served_version() == "1"  # the last good version, restored before READY=1
    assert any(m.get("STATUS", "").startswith("classifier v1") for m in sock.messages)
    assert not _watchdog_fired(sock, timeout=3 * WATCHDOG_S)
