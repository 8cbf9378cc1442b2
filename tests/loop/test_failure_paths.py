"""Failure paths of the loop, in process (tests/support/harness.py): what happens next is decided
per reason — local damage is repaired, the unexpected is retried up to a budget, a full disk is
waited out, a failed gate reverts and quarantines — and every `begin` the executor writes gets
its `done` or `failed`, reverts and restores included."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from reconciler.core.desired import Gates, RolloutSpec, RolloutStage
from reconciler.core.names import Phase, StepName
from reconciler.core.reasons import UNEXPECTED_BUDGET
from reconciler.state import store as store_module
from tests.support.fake_backend import raises, returns
from tests.support.harness import Device, device


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Device]:
    yield from device(tmp_path)


def unclosed_begins(dev: Device) -> list[tuple[int, str]]:
    """Steps the executor began and never closed with `done` or `failed`."""
    open_: dict[tuple[str, str], int] = {}
    for rec in dev.journal.records():
        key = (rec.model, rec.step)
        if rec.phase == Phase.BEGIN:
            open_[key] = rec.seq
        elif rec.phase in (Phase.DONE, Phase.FAILED):
            open_.pop(key, None)
    return sorted((seq, step) for (_, step), seq in open_.items())


def failed(dev: Device, step: StepName) -> list[dict]:
    return [r.details for r in dev.records(step=step, phase=Phase.FAILED)]


def test_first_deploy_runs_every_step_and_closes_each(dev: Device) -> None:
    dev.converge(dev.spec("1"))
    assert dev.serving() == "1"
    done = [r.step for r in dev.records(phase=Phase.DONE)]
    assert done == ["fetch", "verify", "build", "warm", "health-check", "swap", "retire"]
    assert unclosed_begins(dev) == []


def test_a_damaged_build_artifact_is_rebuilt_never_quarantined(dev: Device) -> None:
    spec = dev.spec("1")
    dev.converge(spec)
    [artifact] = [p for p in (dev.state / "artifacts").rglob("model.*") if p.is_file()]
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flash bit-rot
    os.chmod(artifact, 0o644)
    artifact.write_bytes(bytes(data))

    dev = dev.restart()
    # the restore found the damage, discarded the copy, rebuilt it and serves again at once
    assert dev.serving() == "1"
    [damaged] = failed(dev, StepName.RESTORE)
    assert damaged["reason"] == "artifact-damaged" and damaged["next"] == "repair"
    assert dev.backend.calls.count("build") == 1
    assert dev.quarantine.get("m") is None
    dev.converge(spec)
    assert dev.serving() == "1" and unclosed_begins(dev) == []


def test_an_unexpected_exception_is_retried_and_the_traceback_journaled(dev: Device) -> None:
    dev.backend.arm("load", raises(ZeroDivisionError("division by zero in a plugin")))
    dev.converge(dev.spec("1"))
    assert dev.serving() == "1"
    [first] = failed(dev, StepName.WARM)
    assert first["reason"] == "unexpected" and first["next"] == "budget"
    assert "ZeroDivisionError" in first["traceback"]
    assert dev.quarantine.get("m") is None
    assert unclosed_begins(dev) == []


def test_the_unexpected_is_quarantined_once_its_budget_is_spent(dev: Device) -> None:
    spec = dev.spec("1")
    dev.backend.arm("load", *[raises(KeyError("boom"))] * UNEXPECTED_BUDGET)
    dev.converge(spec)
    assert dev.serving() is None
    warm_failures = failed(dev, StepName.WARM)
    assert len(warm_failures) == UNEXPECTED_BUDGET
    assert warm_failures[-1]["next"] == "quarantine"
    assert "KeyError" in warm_failures[-1]["traceback"]
    held = dev.quarantine.get("m")
    assert held is not None and held.digest == spec.digest
    # quarantined: planned no further, however many passes run
    dev.converge(spec)
    assert len(failed(dev, StepName.WARM)) == UNEXPECTED_BUDGET


def test_a_full_disk_is_waited_out_and_leaves_no_partial_file(
    dev: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(f: object, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    real = store_module._write
    monkeypatch.setattr(store_module, "_write", full)
    spec = dev.spec("1")
    dev.converge(spec, max_passes=3)
    assert dev.serving() is None
    reasons = {(f["reason"], f["next"]) for f in failed(dev, StepName.FETCH)}
    assert reasons == {("disk-full", "retry")}
    assert dev.quarantine.get("m") is None
    assert not any((dev.state / "store" / "partial").iterdir())

    monkeypatch.setattr(store_module, "_write", real)  # space freed
    dev.converge(spec)
    assert dev.serving() == "1" and unclosed_begins(dev) == []


def canary(dev: Device, version: str) -> object:
    rollout = RolloutSpec(
        "canary",
        steps=(RolloutStage(50, 5.0, "5s"),),
        gates=Gates(max_error_rate=0.05, min_requests=10),
    )
    return dev.spec(version, rollout=rollout)


def test_a_failed_gate_sends_traffic_back_reverts_and_quarantines(dev: Device) -> None:
    dev.converge(dev.spec("1"))
    v2 = canary(dev, "2")
    dev.converge(v2, each_pass=lambda: dev.traffic(40, candidate_fails=True))  # type: ignore[arg-type]
    slot = dev.repo.get("m")
    assert slot is not None and slot.split is None and slot.candidate is None
    assert dev.serving() == "1"
    [gate] = failed(dev, StepName.ROLLOUT)
    assert gate["reason"] == "rollout-gate" and gate["next"] == "quarantine"
    assert [r.phase for r in dev.records(step=StepName.REVERT)] == ["begin", "done"]
    held = dev.quarantine.get("m")
    assert held is not None and held.digest == v2.digest  # type: ignore[attr-defined]
    assert unclosed_begins(dev) == []


def test_a_revert_that_raises_is_journaled_failed_and_serving_goes_on(
    dev: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev.converge(dev.spec("1"))
    nan = np.full((1, 4), np.nan, np.float32)
    dev.backend.arm("infer", *[returns(nan)] * 50)
    real_revert = dev.ops.revert
    calls = []

    def revert_once_broken(model: str, reason: str) -> object:
        calls.append(model)
        if len(calls) == 1:
            raise RuntimeError("slot lock poisoned")
        return real_revert(model, reason)

    monkeypatch.setattr(dev.ops, "revert", revert_once_broken)
    v2 = dev.spec("2")
    dev.converge(v2)
    assert dev.serving() == "1"
    [health] = failed(dev, StepName.HEALTH_CHECK)
    assert health["reason"] == "health-nan"
    reverts = dev.records(step=StepName.REVERT)
    assert [r.phase for r in reverts][:2] == ["begin", "failed"]
    assert "slot lock poisoned" in reverts[1].details["message"]
    # the quarantined candidate still loaded is dropped by the next pass: nothing left behind
    assert dev.repo.get("m").candidate is None  # type: ignore[union-attr]
    assert dev.quarantine.get("m").digest == v2.digest  # type: ignore[union-attr]
    assert unclosed_begins(dev) == []


def test_restore_is_journaled_like_any_step(dev: Device) -> None:
    dev.converge(dev.spec("1"))
    dev = dev.restart()
    assert dev.serving() == "1"
    restores = dev.records(step=StepName.RESTORE)
    assert [r.phase for r in restores] == ["begin", "done"]
    assert restores[0].to_version == "1" and unclosed_begins(dev) == []


def test_a_damaged_stored_model_is_fetched_again_never_quarantined(dev: Device) -> None:
    spec = dev.spec("1")
    dev.converge(spec)
    blob = dev.state / "store" / "sha256" / spec.sha256
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    os.chmod(blob, 0o644)
    blob.write_bytes(bytes(data))

    dev = dev.restart()
    assert dev.serving() == "1"  # refetched from the registry, verified, loaded
    [damaged] = failed(dev, StepName.RESTORE)
    assert damaged["reason"] == "store-damaged" and damaged["next"] == "repair"
    assert blob.read_bytes() != bytes(data)  # the intact bytes again
    assert dev.quarantine.get("m") is None and unclosed_begins(dev) == []


def test_a_waiting_stage_that_desired_state_moves_past_is_closed_not_left_open(
    dev: Device,
) -> None:
    dev.converge(dev.spec("1"))
    dev.converge(canary(dev, "2"), max_passes=2)  # no traffic: stage 1 waits for requests
    assert dev.executor.waiting_on("m") is not None
    dev.converge(dev.spec("3"))
    assert dev.serving() == "3"
    [superseded] = failed(dev, StepName.ROLLOUT)
    assert superseded["reason"] == "superseded" and superseded["next"] == "retry"
    assert dev.quarantine.get("m") is None and unclosed_begins(dev) == []


def test_a_failed_revert_is_not_held_against_the_version_after_a_restart(
    dev: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev.converge(dev.spec("1"))
    # the candidate is loaded when its health check hits a bug (unexpected: not a verdict),
    # and the revert that follows hits one too
    monkeypatch.setattr(dev.ops, "health_check", lambda spec: {}["golden"])
    monkeypatch.setattr(dev.ops, "revert", lambda model, reason: 1 / 0)
    v2 = dev.spec("2")
    dev.converge(v2, max_passes=1)
    revert = [r for r in dev.records(step=StepName.REVERT) if r.phase == Phase.FAILED]
    assert revert and revert[0].details["next"] == "retry" and not revert[0].details["terminal"]
    monkeypatch.undo()
    dev = dev.restart()
    assert dev.quarantine.get("m") is None  # neither failure condemned v2
    dev.converge(v2)
    assert dev.serving() == "2" and unclosed_begins(dev) == []
