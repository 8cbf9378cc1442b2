"""One definition of "in sync": the planner has nothing left to do for the model.

`hotswap plan`, `hotswap status` and the operator commands all ask `in_sync`; these tests pin
that it is the planner's answer (so the three cannot disagree) and that a backend upgrade, which
changes the build key but not the version, is not in sync.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from reconciler.core.buildkey import build_key
from reconciler.core.desired import ModelSpec, RetentionSpec
from reconciler.core.insync import in_sync
from reconciler.core.observed import InstanceInfo, ModelObserved, Observed
from reconciler.core.plan import plan_model
from reconciler.core.steps import Build
from tests.support.units import plain_spec

ORT = "1.32.0"
UPGRADED = "1.33.0"


def instance(spec: ModelSpec, backend_version: str = ORT) -> InstanceInfo:
    return InstanceInfo(
        version=spec.version,
        sha256=spec.sha256,
        build_key=build_key(spec, backend_version),
        digest=spec.digest,
        healthy=True,
        source_file=spec.file,
    )


def observed(model: ModelObserved, backend_version: str = ORT) -> Observed:
    return Observed(
        models={model.name: model}, backend_versions=(("onnxruntime", backend_version),)
    )


def test_serving_the_desired_version_with_this_devices_build_key_is_in_sync() -> None:
    spec = plain_spec("2")
    assert in_sync(spec, observed(ModelObserved("classifier", active=instance(spec))))


def test_a_backend_upgrade_is_not_in_sync_and_the_planner_rebuilds() -> None:
    spec = plain_spec("2")
    built_before = ModelObserved("classifier", active=instance(spec, backend_version=ORT))
    after_upgrade = observed(built_before, backend_version=UPGRADED)
    assert not in_sync(spec, after_upgrade)
    steps = plan_model(spec, built_before, after_upgrade)
    assert any(isinstance(s, Build) for s in steps)
    # the same version and sha256 are served all along: comparing those would say "in sync"
    assert built_before.active is not None
    assert (built_before.active.version, built_before.active.sha256) == (spec.version, spec.sha256)


def test_another_version_active_is_not_in_sync() -> None:
    spec = plain_spec("2")
    assert not in_sync(
        spec, observed(ModelObserved("classifier", active=instance(plain_spec("1"))))
    )
    assert not in_sync(spec, observed(ModelObserved("classifier")))


def test_a_quarantined_version_is_not_in_sync_though_nothing_is_planned() -> None:
    spec = plain_spec("2")
    model = ModelObserved("classifier", active=instance(plain_spec("1")), failed_digest=spec.digest)
    assert plan_model(spec, model, observed(model)) == []
    assert not in_sync(spec, observed(model))


def test_leftovers_keep_it_out_of_sync_until_they_are_cleaned_up() -> None:
    spec = plain_spec("2")
    v1, v3 = instance(plain_spec("1")), instance(plain_spec("3"))
    with_candidate = ModelObserved("classifier", active=instance(spec), candidate=v3)
    assert not in_sync(spec, observed(with_candidate))  # a rollout overtaken: revert it first
    with_standby = ModelObserved("classifier", active=instance(spec), standby=v1)
    assert in_sync(spec, observed(with_standby))  # kept on purpose (keep_standby)
    no_standby = replace(spec, retention=RetentionSpec(keep_standby=False))
    assert not in_sync(no_standby, observed(with_standby))  # retention no longer keeps it


SPECS = [plain_spec("2"), replace(plain_spec("2"), retention=RetentionSpec(keep_standby=False))]
INSTANCES = [None, "1", "2", "2-old-backend", "3"]


def _inst(which: str | None) -> InstanceInfo | None:
    if which is None:
        return None
    if which == "2-old-backend":
        return instance(plain_spec("2"), backend_version="1.17.0")
    return instance(plain_spec(which))


@pytest.mark.parametrize("spec", SPECS)
def test_in_sync_is_exactly_nothing_planned_and_not_quarantined(spec: ModelSpec) -> None:
    for active, candidate, standby, failed in itertools.product(
        INSTANCES, INSTANCES, INSTANCES, [None, spec.digest]
    ):
        model = ModelObserved(
            "classifier",
            active=_inst(active),
            candidate=_inst(candidate),
            standby=_inst(standby),
            failed_digest=failed,
        )
        obs = observed(model)
        expected = not plan_model(spec, model, obs) and failed != spec.digest
        assert in_sync(spec, obs) == expected, (active, candidate, standby, failed)
