"""The controller in process: desired files in, passes run by hand, a fake backend and clock.

What the daemon tests show end to end, here in milliseconds: a file is a deployment, a changed
file a swap, a retryable failure waits out its backoff (passes in between leave the model
alone), and each pass is counted in the status snapshot.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.loop.controller import Controller
from reconciler.ops.backends import Backends
from reconciler.state.journal import Journal
from runtime.backends.base import BackendError
from runtime.serving.slot import Repository
from tests.support.clock import FakeClock
from tests.support.fake_backend import FakeBackend, raises
from tests.support.kit import write_text
from tests.support.tiny_models import TinyRegistry, deployment_yaml


@dataclass
class Loop:
    controller: Controller
    registry: TinyRegistry
    desired: Path
    backend: FakeBackend
    clock: FakeClock

    def want(self, version: str) -> None:
        write_text(self.desired / "m.yaml", deployment_yaml(self.registry, "m", version))

    def passes(self, n: int = 8) -> None:
        """`n` planning passes, each waiting for the work it dispatched (bounded)."""
        for _ in range(n):
            self.controller.reconcile_once()
            deadline = time.monotonic() + 10
            while self.controller.busy() and time.monotonic() < deadline:
                time.sleep(0.005)
            assert not self.controller.busy(), "a worker did not finish in 10 s"

    def serving(self) -> str | None:
        slot = self.controller.repo.get("m")
        return slot.active.version if slot and slot.active else None

    def steps(self, step: str, phase: str) -> int:
        return sum(
            1 for r in self.controller.journal.records() if (r.step, r.phase) == (step, phase)
        )


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    registry = TinyRegistry.create(tmp_path / "publisher")
    state, desired = tmp_path / "state", tmp_path / "desired"
    (state / "trust").mkdir(parents=True)
    desired.mkdir()
    shutil.copyfile(registry.public_key, state / "trust" / "publisher.pub")
    backend, clock = FakeBackend(), FakeClock()
    journal = Journal(state / "journal.db")
    controller = Controller(
        desired,
        state,
        journal,
        Repository(),
        resync_s=3600,
        backends=Backends({"onnxruntime": backend}, {"onnxruntime": backend.cache_identity}),
        clock=clock,
    )
    controller.recover()
    yield Loop(controller, registry, desired, backend, clock)
    controller._pool.shutdown(wait=True)
    controller.ctx.shutdown()
    journal.close()


def test_a_desired_file_is_deployed_and_a_changed_one_swapped(loop: Loop) -> None:
    loop.want("1")
    loop.passes()
    assert loop.serving() == "1"
    loop.want("2")
    loop.passes()
    assert loop.serving() == "2"
    assert loop.steps("swap", "done") == 2
    snapshot = json.loads((loop.controller.state_dir / "status.json").read_text())
    assert snapshot["passes"] == 16 and snapshot["models"]["m"]["active"]["version"] == "2"


def test_a_retryable_failure_waits_out_its_backoff_then_succeeds(loop: Loop) -> None:
    loop.backend.arm("build", raises(BackendError("no space left", reason="disk-full")))
    loop.want("1")
    loop.passes()
    assert loop.serving() is None
    assert loop.backend.calls.count("build") == 1  # seven more passes: none retried it early
    snapshot = json.loads((loop.controller.state_dir / "status.json").read_text())
    assert snapshot["models"]["m"]["last_failure"]["next"] == "retry"
    assert loop.controller.quarantine.get("m") is None
    loop.clock.advance(2.0)  # past the first backoff (0.5-1.5 s)
    loop.passes()
    assert loop.serving() == "1" and loop.backend.calls.count("build") == 2


def test_a_quarantined_version_is_planned_no_more_until_desired_changes(loop: Loop) -> None:
    loop.want("1")
    loop.passes()
    loop.backend.arm("infer", raises(BackendError("bad kernel", reason="infer-failed")))
    loop.want("2")
    loop.passes()
    assert loop.serving() == "1"
    failed = loop.steps("warm", "failed") + loop.steps("health-check", "failed")
    assert failed == 1
    loop.clock.advance(600.0)  # however long: no backoff to wait out, it is held
    loop.passes()
    assert loop.steps("warm", "failed") + loop.steps("health-check", "failed") == failed
    loop.want("3")
    loop.passes()
    assert loop.serving() == "3"


def test_stop_is_bounded_whatever_a_step_is_doing(loop: Loop) -> None:
    """A warm-up that never returns (a session the daemon cannot terminate): `stop` gives up on
    it at its deadline and says so, and the daemon exits without waiting for that thread."""
    stuck, release = threading.Event(), threading.Event()

    def hang() -> None:
        stuck.set()
        release.wait(30)

    loop.backend.arm("infer", hang)
    loop.want("1")
    loop.controller.start()
    try:
        assert stuck.wait(20), "the warm-up never began"
        started = time.monotonic()
        assert loop.controller.stop(timeout_s=0.5) is False
        assert time.monotonic() - started < 5
    finally:
        release.set()


def test_a_step_abandoned_at_stop_writes_no_status_afterwards(loop: Loop) -> None:
    """The process exits while such a step may still run: a status write it started then would
    leave a half-written temp file, so after `stop` nothing writes status.json any more."""
    stuck, release = threading.Event(), threading.Event()
    loop.backend.arm("infer", lambda: (stuck.set(), release.wait(30)))
    loop.want("1")
    loop.controller.start()
    status = loop.controller.state_dir / "status.json"
    try:
        assert stuck.wait(20), "the warm-up never began"
        assert loop.controller.stop(timeout_s=0.5) is False
        before = status.stat().st_mtime_ns
        loop.controller.write_status()  # what the abandoned step's progress callback would do
        assert status.stat().st_mtime_ns == before
        assert not list(status.parent.glob("*.hotswap-tmp"))
    finally:
        release.set()
