"""systemd's notify protocol against a real datagram socket: the messages, and the watchdog pings
that come from the reconcile loop itself (and stop when it is wedged)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.loop.controller import Controller
from reconciler.loop.sdnotify import Notifier
from reconciler.ops.backends import Backends
from reconciler.state import crashpoint
from reconciler.state.journal import Journal
from runtime.serving.slot import Repository
from tests.support.fake_backend import FakeBackend
from tests.support.sdnotify import NotifySocket


@pytest.fixture
def sock() -> Iterator[NotifySocket]:
    s = NotifySocket()
    yield s
    s.close()


def test_messages_reach_the_socket_and_status_is_sent_once_per_change(sock: NotifySocket) -> None:
    notifier = Notifier.from_env(sock.env(watchdog_s=2.0))
    assert notifier.ping_every_s == 1.0
    notifier.ready("starting")
    assert sock.receive(2) == {"READY": "1", "MAINPID": str(os.getpid()), "STATUS": "starting"}
    notifier.status("m v1;  ready")
    notifier.status("m v1; ready")  # the same line: not sent again
    notifier.watchdog()
    notifier.watchdog()  # within a quarter of the timeout: throttled
    notifier.stopping()
    got = [sock.receive(1) for _ in range(3)]
    assert got == [
        {"STATUS": "m v1; ready"},
        {"WATCHDOG": "1"},
        {"STOPPING": "1", "STATUS": "stopping"},
    ]
    assert sock.receive(0.05) is None


def test_a_path_socket_works_and_no_socket_is_a_no_op(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(path))
        assert Notifier(str(path)).send(READY="1")
        assert s.recv(100) == b"READY=1"
    silent = Notifier.from_env({})
    assert not silent.send(READY="1") and silent.ping_every_s is None
    # the watchdog of another process (a child that inherited the variables) is not ours
    other = Notifier.from_env({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert other.ping_every_s is None


def _controller(tmp_path: Path, notifier: Notifier) -> Controller:
    state, desired = tmp_path / "state", tmp_path / "desired"
    (state / "trust").mkdir(parents=True)
    desired.mkdir()
    backend = FakeBackend()
    return Controller(
        desired,
        state,
        Journal(state / "journal.db"),
        Repository(),
        resync_s=3600,  # idle for the whole test: only the idle wait's slices ping
        backends=Backends({"onnxruntime": backend}, {"onnxruntime": backend.cache_identity}),
        notifier=notifier,
    )


def test_the_loop_pings_while_it_runs_and_stops_when_wedged(
    tmp_path: Path, sock: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    notifier = Notifier.from_env(sock.env(watchdog_s=0.2))  # a ping every 0.1 s
    controller = _controller(tmp_path / "live", notifier)
    controller.recover()
    sock.wait_for(lambda m: "STATUS" in m, 2, "STATUS=")  # the status write after restore
    controller.start()
    try:
        assert sock.pings(within=0.6) >= 3
    finally:
        controller.stop()
        controller.journal.close()

    sock.drain()
    monkeypatch.setenv("HOTSWAP_CRASHPOINT", "loop:pass=block")
    wedged = _controller(tmp_path / "wedged", Notifier.from_env(sock.env(watchdog_s=0.2)))
    wedged.recover()
    wedged.start()
    try:
        assert sock.pings(within=0.6) == 0
    finally:
        monkeypatch.delenv("HOTSWAP_CRASHPOINT")  # the released pass must not block again
        crashpoint.unblock()
        wedged.stop()
        wedged.journal.close()
