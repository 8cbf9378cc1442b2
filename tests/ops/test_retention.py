"""Retention: the retire step frees the standby and old blobs/artifacts, never what is in use."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.support.daemon import Daemon
from tests.support.kit import Kit


def _retention(keep_standby: bool, keep_versions: int):
    def mutate(doc: dict) -> None:
        doc["spec"]["retention"] = {"keep_standby": keep_standby, "keep_versions": keep_versions}
        doc["spec"]["rollout"] = {"strategy": "immediate"}  # v6's own file asks for a canary

    return mutate


def _blobs(state: Path) -> set[str]:
    return {p.name for p in (state / "store" / "sha256").iterdir()}


def _artifact_sources(state: Path) -> set[str]:
    return {
        json.loads(m.read_text())["source_sha256"]
        for m in (state / "artifacts").glob("*/meta.json")
    }


def _sha(kit: Kit, version: str) -> str:
    return kit.doc(version)["spec"]["model"]["sha256"]


def _retired(d: Daemon, version: str) -> bool:
    return any(
        r["step"] == "retire" and r["phase"] == "done" and r["to_version"] == version
        for r in d.journal_records("classifier")
    )


def _rolled_through(daemon, kit: Kit, versions: list[str], mutate=None) -> Daemon:
    """A daemon that served each of `versions` in turn, the last one retired after its swap."""
    d: Daemon = daemon()
    kit.write(d.desired, versions[0], mutate=mutate)
    d.start()
    d.wait_version(versions[0])
    for version in versions[1:]:
        kit.write(d.desired, version, mutate=mutate)
        d.wait_version(version)
        d.wait_for(lambda v=version: _retired(d, v), what=f"retire of v{version}")
    return d


def _row(d: Daemon) -> dict:
    return next(m for m in d.status()["models"] if m["model"] == "classifier")


def test_keep_one_version_without_standby_frees_the_old_one(kit: Kit, daemon) -> None:
    d = _rolled_through(daemon, kit, ["1", "2"], _retention(False, 1))

    assert _blobs(d.state) == {_sha(kit, "2")}
    assert _artifact_sources(d.state) == {_sha(kit, "2")}
    assert _row(d)["standby"] is None
    for blob in (d.state / "store" / "sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name


def test_standby_and_recent_versions_are_kept(kit: Kit, daemon) -> None:
    d = _rolled_through(daemon, kit, ["1", "2"], _retention(True, 2))
    assert _blobs(d.state) == {_sha(kit, "1"), _sha(kit, "2")}
    assert _row(d)["standby"]["version"] == "1"


def test_going_back_to_the_standby_is_one_pointer_change(kit: Kit, daemon) -> None:
    d = _rolled_through(daemon, kit, ["1", "2"])
    seen = len(d.journal_records("classifier"))

    kit.write(d.desired, "1")
    d.wait_version("1")
    d.wait_for(
        lambda: _retired(d, "1") and len(d.journal_records("classifier")) > seen + 3,
        what="retire of v1",
    )
    steps = [(r["step"], r["phase"]) for r in d.journal_records("classifier")[seen:]]
    assert steps == [("swap", "begin"), ("swap", "done"), ("retire", "begin"), ("retire", "done")]
    model = _row(d)
    assert model["active"]["version"] == "1"
    assert model["standby"]["version"] == "2"


def test_the_standby_is_kept_even_beyond_keep_versions(kit: Kit, daemon) -> None:
    d = _rolled_through(daemon, kit, ["1", "2"], _retention(True, 1))
    # keep_versions 1 would free v1, but v1 is loaded as the warm standby: a revert needs it
    assert _blobs(d.state) == {_sha(kit, "1"), _sha(kit, "2")}
    assert _artifact_sources(d.state) == {_sha(kit, "1"), _sha(kit, "2")}


def test_only_the_newest_keep_versions_stay_in_the_store(kit: Kit, daemon) -> None:
    d = _rolled_through(daemon, kit, ["1", "2", "6"], _retention(False, 2))
    assert _blobs(d.state) == {_sha(kit, "2"), _sha(kit, "6")}
    assert _artifact_sources(d.state) == {_sha(kit, "2"), _sha(kit, "6")}


def test_turning_keep_standby_off_releases_the_standby_without_a_new_version(
    kit: Kit, daemon
) -> None:
    d = _rolled_through(daemon, kit, ["1", "2"], _retention(True, 1))
    assert _blobs(d.state) == {_sha(kit, "1"), _sha(kit, "2")}  # v1: the standby
    kit.write(d.desired, "2", mutate=_retention(False, 1))  # same version, new retention
    d.wait_for(lambda: _blobs(d.state) == {_sha(kit, "2")}, what="v1 freed")
    model = _row(d)
    assert model["standby"] is None and model["active"]["version"] == "2"
