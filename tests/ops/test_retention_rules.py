"""What retire may remove: only this model's history beyond `keep_versions`, never what is
loaded (by any model, in any role) and never what current desired state pins."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.core.desired import ModelSpec
from reconciler.ops.artifacts import ArtifactCache
from reconciler.ops.backends import Backends
from reconciler.ops.retention import Retention
from reconciler.state.journal import Journal
from reconciler.state.records import BuildDone, FetchDone, SwapDone
from reconciler.state.store import Store
from runtime.serving.slot import Repository
from tests.support.instances import instance
from tests.support.units import plain_spec as spec

VERSIONS = [spec(str(v)) for v in range(1, 6)]  # v1..v5 of classifier, each promoted in turn
BACKENDS = Backends(identities={})  # build keys as this device computes them


def key(s: ModelSpec) -> str:
    return BACKENDS.key_for(s)


@pytest.fixture
def retention(tmp_path: Path) -> Iterator[Retention]:
    journal = Journal(tmp_path / "journal.db")
    store = Store(tmp_path / "store")
    artifacts = ArtifactCache(tmp_path / "artifacts")
    for s in VERSIONS:
        _deployed(journal, store, artifacts, s)
    yield Retention(store, artifacts, Repository(), journal, BACKENDS)
    journal.close()


def _deployed(journal: Journal, store: Store, artifacts: ArtifactCache, s: ModelSpec) -> None:
    """As the executor journals a deployment of `s`: fetched, built and swapped in."""
    store.path(s.sha256).write_bytes(b"model")
    (artifacts.root / key(s)).mkdir()
    (artifacts.root / key(s) / "meta.json").write_text("{}")
    journal.append(s.name, "fetch", "done", to_version=s.version, detail=FetchDone(s.sha256, 5))
    built = BuildDone(key(s), str(artifacts.root / key(s)), 5)
    journal.append(s.name, "build", "done", to_version=s.version, detail=built)
    swap = SwapDone(promoted=s.version, previous=None, build_key=key(s), spec=s)
    journal.append(s.name, "swap", "done", to_version=s.version, detail=swap)


def _shas(*versions: int) -> set[str]:
    return {VERSIONS[v - 1].sha256 for v in versions}


def _keys(*versions: int) -> set[str]:
    return {key(VERSIONS[v - 1]) for v in versions}


def test_only_versions_beyond_keep_versions_expire(retention: Retention) -> None:
    assert retention.expired("classifier", keep_versions=2) == (_shas(1, 2, 3), _keys(1, 2, 3))
    assert retention.expired("classifier", keep_versions=5) == (set(), set())


def test_what_is_loaded_is_kept_whatever_its_age(retention: Retention) -> None:
    slot = retention.repo.slot("classifier")
    slot.activate(instance(VERSIONS[0], key=key(VERSIONS[0])))  # v1 serving again (a rollback)
    slot.set_candidate(instance(VERSIONS[1], key=key(VERSIONS[1])))
    assert retention.expired("classifier", keep_versions=1) == (_shas(3, 4), _keys(3, 4))


def test_what_desired_state_pins_is_kept(retention: Retention) -> None:
    pinned = VERSIONS[2]
    retention.pin([pinned])
    blobs, keys = retention.expired("classifier", keep_versions=1)
    assert (blobs, keys) == (_shas(1, 2, 4), _keys(1, 2, 4))
    retention.pin([])  # the next pass no longer wants it
    assert retention.expired("classifier", keep_versions=1)[0] == _shas(1, 2, 3, 4)


def test_another_models_files_are_never_considered(retention: Retention) -> None:
    assert retention.expired("detector", keep_versions=1) == (set(), set())


def test_retire_removes_the_expired_files_and_the_standby(retention: Retention) -> None:
    slot = retention.repo.slot("classifier")
    slot.activate(instance(VERSIONS[3], key=key(VERSIONS[3])))
    slot.set_candidate(instance(VERSIONS[4], key=key(VERSIONS[4])))
    slot.promote_candidate(keep_standby=True)  # v5 serving, v4 the standby
    detail = retention.retire("classifier", keep_standby=False, keep_versions=1)
    assert slot.standby is None
    assert detail == {
        "removed_blobs": sorted(_shas(1, 2, 3, 4)),
        "removed_artifacts": sorted(_keys(1, 2, 3, 4)),
    }
    assert retention.store.blobs() == _shas(5)
    assert retention.artifacts.keys() == _keys(5)
