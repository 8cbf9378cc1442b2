"""Typed journal records: each writes its schema, reads itself back, and reads 0.1.0's shape;
a record this release cannot read is kept raw, never raised."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.core.desired import HealthSpec, ModelSpec, RolloutSpec, RolloutStage, spec_to_json
from reconciler.core.names import Event, Phase, StepName
from reconciler.state.detail import spec_from_record, spec_to_record
from reconciler.state.journal import Journal
from reconciler.state.records import (
    BuildDone,
    Entry,
    FetchDone,
    OverrideCleared,
    OverrideRefused,
    OverrideSet,
    Raw,
    RestoreBegun,
    RestoreDone,
    RestoreFailed,
    RetryRequested,
    RevertBegun,
    StepBegun,
    StepFailed,
    SwapDone,
    parse,
)
from tests.support import upgrade
from tests.support.records import row
from tests.support.units import plain_spec

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "state-0.1.0" / "journal.jsonl"

CANARY = RolloutSpec("canary", steps=(RolloutStage(10, 30.0, "30s"),))
SPEC = plain_spec("2", rollout=CANARY, health=HealthSpec(golden="/g.npz", max_latency_ms=5.0))
AUTH = {"keyid": "e8ac", "signed": True, "manifest_sha256": "m" * 64}

TYPED = [
    ("fetch", "begin", StepBegun("fetch classifier v2 from /r (sha256 000000000002)")),
    ("revert", "begin", RevertBegun("health-nan")),
    ("fetch", "done", FetchDone("a" * 64, 906909)),
    ("build", "done", BuildDone("k" * 64, "/state/artifacts/k/model.onnxruntime", 907354)),
    ("swap", "done", SwapDone("2", "1", "k" * 64, SPEC, AUTH)),
    ("swap", "done", SwapDone("2", None, "k" * 64, SPEC, None, True, 12.5)),
    ("health-check", "failed", StepFailed("health-nan", "NaN", terminal=True)),
    (
        "rollout",
        "failed",
        StepFailed("rollout-gate", "errors", figures={"stage": 1, "figures": {"n": 3}}),
    ),
    ("build", "failed", StepFailed("unexpected", "boom", traceback="Traceback ...")),
    ("restore", "begin", RestoreBegun(43)),
    ("restore", "done", RestoreDone("1", "k" * 64)),
    ("restore", "failed", RestoreFailed("blob gone")),
    ("override", "done", OverrideSet(SPEC, "3", "bad", "alice", "r" * 32, "2026-01-01")),
    ("override", "done", OverrideSet(SPEC, None)),
    ("override", "done", OverrideCleared("desired version changed 3 -> 4", set_seq=41)),
    ("override", "done", OverrideCleared("cancelled", "c" * 32, 41, "1", "fixed", "bob")),
    ("override", "failed", OverrideRefused("?", "q" * 32, "not JSON")),
    ("override", "failed", OverrideRefused("rollback", "q" * 32, "no", "", "bob", "7")),
    ("retry", "done", RetryRequested("t" * 32, "again", "bob", "now", "d" * 64, "NaN", True)),
]


@pytest.mark.parametrize(("step", "phase", "body"), TYPED, ids=[type(t[2]).__name__ for t in TYPED])
def test_every_type_writes_its_schema_and_reads_itself_back(step: str, phase: str, body) -> None:
    detail = body.to_detail()
    assert detail["schema"] == 1
    json.dumps(detail, allow_nan=False)  # JSON-safe
    assert body.fits(step, phase)
    assert parse(row(1, "classifier", step, phase, body)) == body


def test_a_step_failure_keeps_its_figures_where_0_1_0_wrote_them() -> None:
    detail = StepFailed("rollout-gate", "errors", figures={"stage": 2}).to_detail()
    assert detail["stage"] == 2 and detail["terminal"] is False
    with pytest.raises(ValueError, match="may not be named"):
        StepFailed("x", "y", figures={"message": "z"}).to_detail()


EXPECTED_0_1_0 = {
    ("fetch", "begin"): StepBegun,
    ("fetch", "done"): FetchDone,
    ("build", "done"): BuildDone,
    ("swap", "done"): SwapDone,
    ("health-check", "failed"): StepFailed,
    ("revert", "begin"): RevertBegun,
    ("override", "done"): OverrideSet,
    ("verify", "done"): Raw,  # for people: kept as written
}


def test_every_record_0_1_0_wrote_reads_back() -> None:
    seen = set()
    for line in FIXTURE.read_text().splitlines():
        data = json.loads(line)
        rec = row(data["seq"], data["model"], data["step"], data["phase"], data["detail"])
        body = parse(rec)
        if isinstance(body, Raw):
            assert body.problem is None and body.detail == data["detail"]
        want = EXPECTED_0_1_0.get((rec.step, rec.phase))
        if want is not None:
            assert isinstance(body, want), (rec.seq, body)
            seen.add(want)
    assert seen == set(EXPECTED_0_1_0.values())


def test_0_1_0_shapes_read_as_the_same_values() -> None:
    records = {
        json.loads(line)["seq"]: json.loads(line) for line in FIXTURE.read_text().splitlines()
    }
    swap = SwapDone.from_detail(records[43]["detail"])
    assert (swap.promoted, swap.previous, swap.spec.version) == ("1", "2", "1")
    assert swap.authorization and swap.authorization["keyid"] == "e8ac493a030c1ee4"
    assert not swap.sequential and swap.unavailable_ms is None
    failed = StepFailed.from_detail(records[38]["detail"])
    assert (failed.reason, failed.terminal, failed.figures) == ("health-nan", True, {})
    override = OverrideSet.from_detail(records[41]["detail"])
    assert (override.spec.version, override.desired_version, override.reason) == (
        "1",
        "3",
        "upgrade fixture",
    )


@pytest.mark.parametrize(
    ("step", "phase", "detail", "problem"),
    [
        ("swap", "done", {"schema": 2, "promoted": "1"}, "swap schema 2 is newer"),
        (
            "swap",
            "done",
            {"spec": spec_to_record(SPEC), "spec_schema": 9},
            "spec schema 9 is newer",
        ),
        ("swap", "done", {"promoted": "1"}, "spec: expected an object"),
        ("swap", "done", {"spec": {"name": "c", "version": 1}}, "spec.version: expected text"),
        ("fetch", "done", {"blob": 5}, "blob: expected str"),
        ("restore", "begin", {"schema": "one", "from_seq": 1}, "not a version number"),
        ("override", "done", {"action": "set", "schema": 3}, "newer"),
    ],
)
def test_what_cannot_be_read_is_kept_raw(step: str, phase: str, detail: dict, problem: str) -> None:
    body = parse(row(1, "classifier", step, phase, detail))
    assert isinstance(body, Raw) and body.detail == detail
    assert problem in (body.problem or "")


def test_records_that_are_only_for_people_are_raw_without_a_problem() -> None:
    for step, phase in [("verify", "done"), ("desired", "failed"), ("journal", "failed")]:
        body = parse(row(1, "-", step, phase, {"message": "m"}))
        assert body == Raw({"message": "m"}), (step, phase)


def test_the_promoted_spec_tolerates_fields_added_and_dropped() -> None:
    data = spec_to_record(SPEC)
    data["future_field"] = {"x": 1}  # a later release added it: ignored
    data["health"]["future_check"] = True
    del data["retention"]  # an earlier release lacked it: defaults
    del data["rollout"]["gates"]
    back = spec_from_record(data)
    assert back.retention == ModelSpec("n", "1", "s", "h").retention
    assert back.rollout == CANARY and back.health == SPEC.health
    assert spec_from_record(spec_to_json(SPEC)) == SPEC  # 0.1.0's shape


def test_append_takes_a_typed_record_or_a_dict(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db")
    typed = journal.append("classifier", StepName.FETCH, Phase.DONE, detail=FetchDone("a", 1))
    plain = journal.append("classifier", "fetch", "done", detail={"blob": "b", "bytes": 2})
    assert typed.step == "fetch" and type(typed.step) is str and typed.phase == "done"
    assert typed.details == {"schema": 1, "blob": "a", "bytes": 1}
    assert Entry.of(plain).body == FetchDone("b", 2)
    with pytest.raises(ValueError, match="not a override done record"):
        journal.append("classifier", Event.OVERRIDE, Phase.DONE, detail=FetchDone("a", 1))
    assert journal.verify().ok and journal.verify().records == 2
    journal.close()


def test_a_swap_record_keeps_0_1_0s_spec_keys_so_a_rolled_back_0_1_0_restores_it() -> None:
    """0.1.0 rebuilt the spec with ModelSpec(**spec): one key more and it could not restore."""
    old = next(
        r["detail"]["spec"]
        for r in upgrade.records_0_1_0()
        if (r["step"], r["phase"]) == ("swap", "done")
    )
    detail = SwapDone("1", None, "k", SPEC).to_detail()
    assert set(detail["spec"]) == set(old)
    assert detail["spec_schema"] == 1
    assert parse(row(1, "classifier", "swap", "done", detail)) == SwapDone("1", None, "k", SPEC)
