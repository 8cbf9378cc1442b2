"""The store heals itself (in process, tests/support/harness.py): a stored blob or build artifact
that no longer matches its sha256 is set aside (kept, bounded), journaled as `store-damaged`,
counted, and fetched or built again from its source (`refetched`); meanwhile a model serves from
its intact build artifact; a damaged copy never quarantines the version."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from reconciler.core.desired import Desired
from reconciler.core.errors import IntegrityError
from reconciler.core.names import Event, Phase, StepName
from reconciler.core.plan import plan
from reconciler.core.steps import Fetch
from reconciler.state.damaged import DamagedFiles
from reconciler.state.records import Refetched, StoreDamaged, parse
from tests.support.fake_backend import returns
from tests.support.harness import Device, device


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Device]:
    yield from device(tmp_path)


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # flash bit-rot
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))


def blob(dev: Device, sha: str) -> Path:
    return dev.state / "store" / "sha256" / sha


def artifact(dev: Device) -> Path:
    [path] = [p for p in (dev.state / "artifacts").rglob("model.*") if p.is_file()]
    return path


def events(dev: Device, event: Event) -> list[StoreDamaged | Refetched]:
    found = [parse(r) for r in dev.records(step=event)]
    assert all(isinstance(b, StoreDamaged | Refetched) for b in found)
    return found  # type: ignore[return-value]


def counted(dev: Device, kind: str) -> float:
    value = dev.metrics.registry.get_sample_value(
        "hotswap_store_damaged_total", {"model": "m", "kind": kind}
    )
    return value or 0.0


def test_a_damaged_blob_at_start_serves_from_the_artifact_and_is_fetched_again(
    dev: Device,
) -> None:
    spec = dev.spec("1")
    dev.converge(spec)
    good = blob(dev, spec.sha256).read_bytes()
    flip_byte(blob(dev, spec.sha256))

    dev = dev.restart()
    assert dev.serving() == "1"
    assert "build" not in dev.backend.calls  # served from the intact artifact, not rebuilt
    assert blob(dev, spec.sha256).read_bytes() == good
    [damaged] = events(dev, Event.STORE_DAMAGED)
    assert (damaged.kind, damaged.what, damaged.version) == ("blob", spec.sha256, "1")
    assert damaged.moved_to and Path(damaged.moved_to).parent == dev.state / "damaged"
    assert Path(damaged.moved_to).read_bytes() != good  # kept for a look, not deleted
    [refetched] = events(dev, Event.REFETCHED)
    assert (refetched.kind, refetched.what, refetched.bytes) == ("blob", spec.sha256, len(good))
    assert counted(dev, "blob") == 1
    assert dev.quarantine.get("m") is None
    health = dev.ops.store_health()["m"]
    assert health["damaged"] == 1 and health["repairing"] == []
    assert dev.converge(spec) == []  # in sync: nothing left to do


def test_while_the_registry_is_unreachable_the_artifact_serves_and_the_plan_refetches(
    dev: Device,
) -> None:
    spec = dev.spec("1")
    dev.converge(spec)
    flip_byte(blob(dev, spec.sha256))
    package = Path(spec.source).parent
    hidden = package.with_name("hidden")
    package.rename(hidden)  # the registry is down

    dev = dev.restart()
    assert dev.serving() == "1"
    assert not blob(dev, spec.sha256).exists()
    assert dev.ops.store_health()["m"]["repairing"] == [{"kind": "blob", "what": spec.sha256}]
    assert dev.observe().damaged == {spec.sha256}
    assert events(dev, Event.REFETCHED) == []

    dev = dev.restart()  # what is still to repair survives a restart (from the journal)
    assert dev.serving() == "1" and dev.observe().damaged == {spec.sha256}
    hidden.rename(package)  # the registry is back
    dev.converge(spec)
    assert [r.phase for r in dev.records(step=StepName.FETCH)][-2:] == ["begin", "done"]
    assert blob(dev, spec.sha256).is_file() and dev.observe().damaged == frozenset()
    assert [e.kind for e in events(dev, Event.REFETCHED)] == ["blob"]
    assert dev.serving() == "1" and dev.quarantine.get("m") is None


def test_the_plan_fetches_a_damaged_blob_of_a_model_in_sync(dev: Device) -> None:
    spec = dev.spec("1")
    dev.converge(spec)
    flip_byte(blob(dev, spec.sha256))
    with pytest.raises(IntegrityError, match="set aside"):
        dev.ops.verify(spec)  # as a rebuild would find it
    assert plan(Desired(models={"m": spec}), dev.observe()) == [Fetch("m", spec)]
    dev.converge(spec)
    assert blob(dev, spec.sha256).is_file() and dev.serving() == "1"


def test_a_damaged_artifact_at_start_is_set_aside_and_rebuilt(dev: Device) -> None:
    spec = dev.spec("1")
    dev.converge(spec)
    flip_byte(artifact(dev))

    dev = dev.restart()
    assert dev.serving() == "1" and dev.backend.calls.count("build") == 1
    [damaged] = events(dev, Event.STORE_DAMAGED)
    assert damaged.kind == "artifact" and damaged.moved_to
    assert Path(damaged.moved_to).is_dir()  # the whole artifact directory, meta.json with it
    [rebuilt] = events(dev, Event.REFETCHED)
    assert rebuilt.kind == "artifact" and rebuilt.what == damaged.what
    assert counted(dev, "artifact") == 1 and counted(dev, "blob") == 0
    assert dev.quarantine.get("m") is None


def test_both_copies_damaged_are_both_repaired(dev: Device) -> None:
    spec = dev.spec("1")
    dev.converge(spec)
    flip_byte(blob(dev, spec.sha256))
    flip_byte(artifact(dev))

    dev = dev.restart()
    assert dev.serving() == "1"
    kinds = sorted(e.kind for e in events(dev, Event.STORE_DAMAGED))
    assert kinds == ["artifact", "blob"]
    assert sorted(e.kind for e in events(dev, Event.REFETCHED)) == ["artifact", "blob"]
    assert dev.ops.store_health()["m"]["repairing"] == []
    assert dev.quarantine.get("m") is None


def test_a_blob_damaged_before_an_upgrade_is_fetched_again_not_quarantined(dev: Device) -> None:
    dev.converge(dev.spec("1"))
    v2 = dev.spec("2")
    dev.ops.fetch(v2)  # fetched on an earlier pass, then the flash rots
    flip_byte(blob(dev, v2.sha256))

    dev.converge(v2)
    assert dev.serving() == "2"
    failures = [r.details for r in dev.records(step=StepName.VERIFY, phase=Phase.FAILED)]
    assert failures and failures[0]["reason"] == "store-damaged"
    assert all(f["next"] == "repair" for f in failures)
    assert [e.kind for e in events(dev, Event.REFETCHED)] == ["blob"]
    assert dev.quarantine.get("m") is None


def test_damaged_copies_kept_are_bounded_newest_first(tmp_path: Path) -> None:
    kept = DamagedFiles(tmp_path / "damaged", keep=2)
    for i in range(4):
        (tmp_path / f"blob{i}").write_bytes(b"x" * 10)
        (tmp_path / f"dir{i}").mkdir()
        (tmp_path / f"dir{i}" / "model.fake").write_bytes(b"y")
        assert kept.set_aside(tmp_path / f"blob{i}", "sha256", f"{i:064x}") is not None
        assert kept.set_aside(tmp_path / f"dir{i}", "artifact", f"key{i}") is not None
    assert [(kind, name) for kind, name, _ in kept.entries()] == [
        ("sha256", f"{3:064x}"),
        ("artifact", "key3"),
    ]
    assert len(list((tmp_path / "damaged").iterdir())) == 2
    assert kept.set_aside(tmp_path / "gone", "sha256", "0" * 64) is None


def test_a_copy_that_cannot_be_moved_aside_is_deleted(tmp_path: Path) -> None:
    (tmp_path / "damaged").write_text("not a directory")  # the move cannot be made
    path = tmp_path / "blob"
    path.write_bytes(b"x")
    assert DamagedFiles(tmp_path / "damaged").set_aside(path, "sha256", "0" * 64) is None
    assert not path.exists()


def test_the_verify_redone_after_the_repair_fetches_the_blob_again_at_once(dev: Device) -> None:
    dev.converge(dev.spec("1"))
    v2 = dev.spec("2")
    dev.ops.fetch(v2)
    flip_byte(blob(dev, v2.sha256))

    dev.converge(v2, max_passes=1)  # one pass: the repair happens inside it
    verifies = [r.phase for r in dev.records(step=StepName.VERIFY, to_version="2")]
    assert verifies == ["begin", "failed", "begin", "done"]
    assert dev.serving() == "2"


def test_a_sequential_swap_that_fails_brings_back_the_old_version_despite_its_damaged_blob(
    dev: Device,
) -> None:
    v1 = dev.spec("1")
    dev.converge(v1)
    active = dev.repo.slot("m").active
    assert active is not None
    dev.ops.memory.budget = int(active.meta["memory"] * 1.5)  # v2 fits only once v1 is unloaded
    flip_byte(blob(dev, v1.sha256))
    dev.backend.arm("infer", *[returns(np.full((1, 4), np.nan, np.float32))] * 50)

    dev.converge(dev.spec("2"))
    [warm] = dev.records(step=StepName.WARM, phase=Phase.DONE, to_version="2")
    assert warm.details["sequential"] is True  # v1 was unloaded to make room
    assert dev.serving() == "1"  # the revert restored v1 from its intact artifact
    reverts = [r.phase for r in dev.records(step=StepName.REVERT)]
    assert reverts[-2:] == ["begin", "done"]
    assert [e.kind for e in events(dev, Event.STORE_DAMAGED)] == ["blob"]
    assert [e.kind for e in events(dev, Event.REFETCHED)] == ["blob"]
    assert blob(dev, v1.sha256).is_file()


def test_a_retry_after_a_quarantine_finds_the_damaged_blob_and_repairs_it(dev: Device) -> None:
    dev.converge(dev.spec("1"))
    v2 = dev.spec("2")
    dev.backend.arm("infer", *[returns(np.full((1, 4), np.nan, np.float32))] * 3)
    dev.converge(v2)
    assert dev.quarantine.get("m") is not None and dev.serving() == "1"
    flip_byte(blob(dev, v2.sha256))  # meanwhile its stored copy rots

    dev.executor.lift_quarantine("m")  # `hotswap retry m`
    dev.converge(v2)
    assert dev.serving() == "2" and dev.quarantine.get("m") is None
    assert [e.kind for e in events(dev, Event.STORE_DAMAGED)] == ["blob"]
    assert [e.kind for e in events(dev, Event.REFETCHED)] == ["blob"]


def test_a_model_with_no_intact_copy_at_start_does_not_stop_the_others(dev: Device) -> None:
    m, n = dev.spec("1"), dev.spec("7", name="n")
    assert m.sha256 != n.sha256
    dev.converge(m, n)
    flip_byte(blob(dev, m.sha256))
    shutil.rmtree(dev.state / "artifacts" / dev.ops.backends.key_for(m))
    package = Path(m.source).parent
    package.rename(package.with_name("hidden"))  # and the registry is down

    dev = dev.restart()
    assert dev.serving("n") == "7" and dev.serving("m") is None
    assert dev.repo.known("m")  # answered 503, not 404, until it heals
    assert dev.quarantine.get("m") is None
    package.with_name("hidden").rename(package)
    dev.converge(m, n)
    assert dev.serving("m") == "1" and dev.serving("n") == "7"
    assert [e.what for e in events(dev, Event.REFETCHED)] == [m.sha256]
