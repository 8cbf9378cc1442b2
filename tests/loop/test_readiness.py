"""`/v2/health/ready` a fleet can use: a new model that failed leaves a working device ready."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.loop.controller import Controller
from reconciler.loop.readiness import Readiness
from reconciler.ops.backends import Backends
from reconciler.state.journal import Journal
from runtime.backends.base import BackendError
from runtime.serving.slot import Repository
from tests.support.clock import FakeClock
from tests.support.fake_backend import FakeBackend, raises
from tests.support.kit import write_text
from tests.support.tiny_models import TinyRegistry, deployment_yaml


def test_ready_while_every_model_that_served_serves() -> None:
    r = Readiness()
    serving: set[str] = set()
    ask = lambda names: r.ready(names, serving.__contains__)  # noqa: E731
    assert not ask(["a", "b"])  # a device that just booted: nothing serves yet
    serving.add("a")
    assert ask(["a", "b"])  # a works; b is still on its way
    serving.add("b")
    assert ask(["a", "b"])
    assert ask(["a", "b", "c"])  # c is new and has never served: a working device stays ready
    serving.discard("a")
    assert not ask(["a", "b", "c"])  # a served before and does not now
    assert ask(["b", "c"])  # a is no longer desired


def test_a_device_that_serves_nothing_it_is_asked_to_is_not_ready() -> None:
    assert not Readiness().ready(["bad"], lambda n: False)
    assert Readiness().ready([], lambda n: False)  # nothing desired: nothing missing


def test_strict_readiness_wants_every_desired_model() -> None:
    r = Readiness(strict=True)
    assert r.ready(["a"], lambda n: True)
    assert not r.ready(["a", "b"], lambda n: n == "a")


def test_restored_models_count_from_boot() -> None:
    r = Readiness()
    r.served_before(["a"])
    assert not r.ready(["a", "b"], lambda n: n == "b")


def _passes(controller: Controller, n: int = 6) -> None:
    for _ in range(n):
        controller.reconcile_once()
        deadline = time.monotonic() + 10
        while controller.busy() and time.monotonic() < deadline:
            time.sleep(0.005)


@pytest.fixture(params=[False, True], ids=["default", "strict"])
def device(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Controller, Path]]:
    registry = TinyRegistry.create(tmp_path / "publisher")
    state, desired = tmp_path / "state", tmp_path / "desired"
    (state / "trust").mkdir(parents=True)
    desired.mkdir()
    shutil.copyfile(registry.public_key, state / "trust" / "publisher.pub")
    backend = FakeBackend()
    journal = Journal(state / "journal.db")
    controller = Controller(
        desired,
        state,
        journal,
        Repository(),
        resync_s=3600,
        strict_readiness=request.param,
        backends=Backends({"onnxruntime": backend}, {"onnxruntime": backend.cache_identity}),
        clock=FakeClock(),
    )
    controller.recover()
    write_text(desired / "a.yaml", deployment_yaml(registry, "a", "1"))
    _passes(controller)
    assert controller.ready()
    backend.arm("infer", raises(BackendError("bad kernel", reason="infer-failed")))
    write_text(desired / "b.yaml", deployment_yaml(registry, "b", "1"))
    _passes(controller)
    yield controller, desired
    controller._pool.shutdown(wait=True)
    controller.ctx.shutdown()
    journal.close()


def test_a_quarantined_new_model_leaves_a_working_device_ready(
    device: tuple[Controller, Path],
) -> None:
    controller, _ = device
    assert controller.quarantine.get("b") is not None
    assert controller.repo.get("a") is not None
    assert controller.ready() is (not controller.readiness.strict)
