"""Operator overrides as pure values: when one applies, when it ends, what a rollback picks."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from reconciler.core.desired import (
    Desired,
    LoadError,
    ModelSpec,
    RetentionSpec,
    RolloutSpec,
    RolloutStage,
)
from reconciler.core.override import Override, effective_desired, rollback_target, serving_spec
from tests.support.units import plain_spec as spec


def override(version: str, desired_version: str | None, name: str = "classifier") -> Override:
    return Override(name, spec(version, name), desired_version, reason="bad", user="alice", seq=7)


def desired_of(*specs: ModelSpec, errors: tuple[LoadError, ...] = (), readable: bool = True):
    return Desired({s.name: s for s in specs}, errors=errors, readable=readable)


# -- effective_desired: (case, desired, overrides, served version or None, ended reason) --------
CASES = [
    ("same desired version: the override is served", desired_of(spec("2")), "1", "2", "1", None),
    (
        "desired version changed: ended",
        desired_of(spec("3")),
        "1",
        "2",
        "3",
        "desired version changed 2 -> 3",
    ),
    (
        "desired went back to the overridden version's predecessor: still a change",
        desired_of(spec("1")),
        "1",
        "2",
        "1",
        "desired version changed 2 -> 1",
    ),
    (
        "model no longer desired: ended",
        desired_of(spec("5", "other")),
        "1",
        "2",
        None,
        "desired state no longer defines classifier",
    ),
    (
        "its desired file is invalid (held): kept and served",
        desired_of(errors=(LoadError("/desired/classifier.yaml", "bad", model="classifier"),)),
        "1",
        "2",
        "1",
        None,
    ),
    (
        "its file failed before the name could be read: kept",
        desired_of(errors=(LoadError("/desired/classifier.yaml", "not YAML"),)),
        "1",
        "2",
        "1",
        None,
    ),
    ("the directory cannot be read: kept", desired_of(readable=False), "1", "2", "1", None),
    (
        "set while held (no desired version): any valid version ends it",
        desired_of(spec("2")),
        "1",
        None,
        "2",
        "desired version changed - -> 2",
    ),
]


@pytest.mark.parametrize(
    ("desired", "version", "desired_version", "served", "ended"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_effective_desired(
    desired: Desired,
    version: str,
    desired_version: str | None,
    served: str | None,
    ended: str | None,
) -> None:
    planned, gone = effective_desired(desired, {"classifier": override(version, desired_version)})
    got = planned.models.get("classifier")
    assert (got.version if got else None) == served
    assert gone == ([("classifier", ended)] if ended else [])


def test_other_models_are_untouched_and_desired_is_not_mutated() -> None:
    desired = desired_of(spec("2"), spec("5", "other"))
    planned, gone = effective_desired(desired, {"classifier": override("1", "2")})
    assert gone == []
    assert planned.models["other"] is desired.models["other"]
    assert desired.models["classifier"].version == "2"
    assert planned.errors == desired.errors and planned.revision == desired.revision


def test_serving_spec_is_the_promoted_one_so_the_standby_matches() -> None:
    promoted = spec("1")
    assert serving_spec(Override("classifier", promoted, "2"), spec("2")).digest == promoted.digest


def test_serving_spec_is_immediate_and_keeps_desired_retention_and_file() -> None:
    canary = RolloutSpec("canary", steps=(RolloutStage(10, 30.0, "30s"),))
    desired = spec("2", retention=RetentionSpec(keep_standby=False, keep_versions=5))
    desired = dataclasses.replace(desired, file="/desired/elsewhere.yaml")
    served = serving_spec(Override("classifier", spec("1", rollout=canary), "2"), desired)
    assert served.rollout.strategy == "immediate" and served.rollout.stages == ()
    assert served.retention == desired.retention
    assert served.file == "/desired/elsewhere.yaml"
    assert (served.version, served.sha256) == ("1", spec("1").sha256)


def test_describe_names_version_reason_user_and_end() -> None:
    text = override("1", "2").describe()
    assert text == (
        "serving v1 by operator rollback (reason: bad, by alice) until desired changes from v2"
    )
    assert "until its desired file is valid again" in override("1", None).describe()


# -- what a rollback picks (from the promotions, as reconciler.state.queries lists them) --------
HISTORY = [spec("1"), spec("2"), spec("3")]
ALL = {spec(v).sha256 for v in ("1", "2", "3")}


def pick(
    promoted: list[ModelSpec],
    active: str | None = "3",
    desired: str | None = "3",
    standby: str | None = None,
    store: set[str] = ALL,
    to: str | None = None,
    overridden: bool = True,
) -> str:
    got = rollback_target(
        "classifier",
        promoted,
        active_version=active,
        desired_version=desired,
        standby_digest=spec(standby).digest if standby else None,
        in_store=store.__contains__,
        to=to,
        overridden=overridden,
    )
    return got if isinstance(got, str) else f"v{got.version}"


PICKS = [
    ("the warm standby", dict(standby="2"), "v2"),
    ("no standby: the version promoted before the active one", dict(), "v2"),
    ("the standby even when older than the previous", dict(standby="1"), "v1"),
    (
        "a second rollback goes further back, not back to the desired version",
        dict(active="2", desired="3", standby="3"),
        "v1",
    ),
    (
        "during an update (a canary of v3 over v2): stay on the version that serves",
        dict(active="2", desired="3", standby="1", overridden=False),
        "v2",
    ),
    ("--to a version in the store", dict(to="1"), "v1"),
    ("--to the desired version itself is allowed", dict(to="3"), "v3"),
    (
        "--to a version never served here",
        dict(to="7"),
        "v7 is not in the local store; versions you can roll back to: 1, 2, 3",
    ),
    (
        "--to a version whose blob was garbage-collected",
        dict(to="1", store=ALL - {spec("1").sha256}),
        "v1 is not in the local store; versions you can roll back to: 2, 3",
    ),
    (
        "the previous version's blob is gone",
        dict(store={spec("3").sha256}),
        "v2 (the version promoted before) is not in the local store;"
        " versions you can roll back to: 3 (use --to VERSION)",
    ),
]


@pytest.mark.parametrize(("kw", "want"), [p[1:] for p in PICKS], ids=[p[0] for p in PICKS])
def test_rollback_target(kw: dict[str, Any], want: str) -> None:
    assert pick(HISTORY, **kw) == want


def test_nothing_to_roll_back_to() -> None:
    assert pick([spec("3")]) == (
        "classifier has no earlier version on this device to roll back to;"
        " versions you can roll back to: 3"
    )
    assert pick([]) == (
        "classifier has no earlier version on this device to roll back to;"
        " no promoted version is in the local store"
    )
