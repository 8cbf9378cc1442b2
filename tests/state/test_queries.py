"""What the journal says, read back through reconciler.state.queries (rows built in memory)."""

from __future__ import annotations

import dataclasses

from reconciler.core.override import Override
from reconciler.state import queries
from reconciler.state.records import (
    BuildDone,
    FetchDone,
    OverrideCleared,
    OverrideRefused,
    OverrideSet,
    Raw,
    RetryRequested,
    StepFailed,
    SwapDone,
)
from reconciler.state.status import override_entry, overrides_from_snapshot
from tests.support.records import row
from tests.support.units import plain_spec as spec


def swap(seq: int, version: str, model: str = "classifier", key: str = "") -> object:
    s = spec(version, model)
    body = SwapDone(version, None, key or f"key-{version}", s)
    return row(seq, model, "swap", "done", body, to_version=version, desired_digest=s.digest)


def set_rec(seq: int, version: str, desired_version: str, model: str = "classifier") -> object:
    o = Override(model, spec(version, model), desired_version, "why", "bob", "r" * 32)
    return row(seq, model, "override", "done", OverrideSet.of(o))


def clear(seq: int, model: str = "classifier", request_id: str | None = None) -> object:
    return row(seq, model, "override", "done", OverrideCleared("x", request_id=request_id))


def fail(seq: int, version: str, terminal: bool = True, step: str = "health-check") -> object:
    body = StepFailed("health-nan", f"v{version}: NaN", terminal=terminal)
    return row(seq, "classifier", step, "failed", body, desired_digest=spec(version).digest)


# -- overrides -----------------------------------------------------------------------------------
def test_overrides_from_journal_replays_set_and_clear() -> None:
    records = [
        set_rec(1, "1", "2"),
        set_rec(2, "4", "5", "other"),
        row(3, "classifier", "override", "done", {"action": "clear", "why": "x"}),  # as 0.1.0
        set_rec(4, "0", "2"),
        row(5, "classifier", "override", "failed", OverrideRefused("rollback", "q" * 32, "no")),
        swap(6, "2"),
    ]
    found = queries.overrides(records)
    assert sorted(found) == ["classifier", "other"]
    assert (found["classifier"].spec.version, found["classifier"].seq) == ("0", 4)
    assert found["classifier"].desired_version == "2"
    assert (found["classifier"].reason, found["classifier"].user) == ("why", "bob")
    assert found["classifier"].set_at == "2026-01-01T00:00:00+00:00"


def test_an_unreadable_set_record_is_skipped() -> None:
    bad = row(1, "classifier", "override", "done", {"action": "set", "spec": {"version": "1"}})
    assert queries.overrides([bad]) == {}
    assert isinstance(queries.Entry.of(bad).body, Raw)


def test_snapshot_round_trip() -> None:
    o = Override("classifier", spec("1"), "2", reason="bad", user="alice", seq=7)
    o = dataclasses.replace(o, set_at="t", request_id="a" * 32)
    back = overrides_from_snapshot({"classifier": override_entry(o), "junk": {"spec": 3}})
    assert back == {"classifier": o}
    assert overrides_from_snapshot(None) == {} and overrides_from_snapshot([1]) == {}


def test_requests_handled_and_the_answer_to_one() -> None:
    retry = RetryRequested("b" * 32, reason="again", cleared_digest="d" * 64)
    records = [
        set_rec(1, "1", "2"),
        row(2, "classifier", "override", "failed", OverrideRefused("?", "c" * 32, "not JSON")),
        row(3, "classifier", "retry", "done", retry),
        clear(4),  # ended by desired state: no request
        row(5, "classifier", "fetch", "done", {"request_id": "e" * 32}),  # not a request
    ]
    assert queries.handled_requests(records) == {"r" * 32, "b" * 32, "c" * 32}
    answer = queries.answer(records, "b" * 32)
    assert answer is not None and answer.body == retry and answer.rec.seq == 3
    refused = queries.answer(records, "c" * 32)
    assert refused is not None and queries.message(refused) == "not JSON"
    assert queries.answer(records, "e" * 32) is None


# -- promotions ----------------------------------------------------------------------------------
def test_promotions_order_by_latest_promotion_and_skip_other_models() -> None:
    records = [
        swap(1, "1"),
        swap(2, "2"),
        swap(3, "1"),
        swap(4, "9", "other"),
        row(5, "classifier", "swap", "failed", StepFailed("x", "no")),
        row(6, "classifier", "swap", "done", {"spec": {"version": "7"}}),  # unreadable
    ]
    assert [s.version for s in queries.promotions(records, "classifier")] == ["2", "1"]


def test_last_promoted_is_the_last_swap_done_per_model_and_forgets_unloaded() -> None:
    records = [swap(1, "1", "a"), swap(2, "1", "b"), swap(3, "2", "a")]
    records += [row(4, "a", "swap", "begin", to_version="3"), row(5, "a", "swap", "failed")]
    records += [row(6, "a", "health-check", "done", to_version="4"), row(7, "b", "unload", "begin")]
    promoted = queries.last_promoted(records)
    assert {m: e.rec.to_version for m, e in promoted.items()} == {"a": "2", "b": "1"}
    records.append(row(8, "b", "unload", "done"))
    assert {m: e.rec.to_version for m, e in queries.last_promoted(records).items()} == {"a": "2"}
    records.append(swap(9, "5", "b"))  # deployed again after the unload
    promoted = queries.last_promoted(records)
    assert {m: e.rec.to_version for m, e in promoted.items()} == {"a": "2", "b": "5"}
    assert promoted["a"].rec.seq == 3 and isinstance(promoted["a"].body, SwapDone)
    assert promoted["a"].body.spec == spec("2", "a")


def test_an_unreadable_last_promotion_is_reported_not_replaced_by_an_earlier_one() -> None:
    newer = {"schema": 7, "promoted": "2", "restore_point": {}}
    records = [swap(1, "1"), row(2, "classifier", "swap", "done", newer, to_version="2")]
    body = queries.last_promoted(records)["classifier"].body
    assert isinstance(body, Raw) and "schema 7 is newer" in (body.problem or "")


def test_history_is_what_this_model_brought_in() -> None:
    records = [
        row(1, "classifier", "fetch", "done", FetchDone("a" * 64, 10)),
        row(2, "classifier", "build", "done", BuildDone("k1", "/x", 11)),
        swap(3, "1", key="k1"),
        row(4, "other", "fetch", "done", FetchDone("b" * 64, 10)),
        row(5, "classifier", "fetch", "done", {"blob": "c" * 64, "bytes": 3}),  # as 0.1.0
        row(6, "classifier", "build", "done", {"build_key": "k2"}),
        swap(7, "2", key="k2"),
        swap(8, "1", key="k1"),
    ]
    found = queries.history(records, "classifier")
    assert found.blobs == {"a" * 64, "c" * 64}
    assert found.build_keys == {"k1", "k2"}
    assert found.promoted == [(spec("2").sha256, "k2"), (spec("1").sha256, "k1")]


# -- quarantine ----------------------------------------------------------------------------------
def test_a_terminal_failure_is_quarantined_until_a_swap_an_unload_or_a_retry() -> None:
    assert queries.quarantined([fail(1, "3", terminal=False)]) == {}
    held = queries.quarantined([swap(1, "2"), fail(2, "3")])
    assert held == {"classifier": queries.Quarantine(spec("3").digest, "v3: NaN", 2)}
    for seq, ends in enumerate(
        [
            swap(3, "4"),
            row(3, "classifier", "unload", "done"),
            row(3, "classifier", "retry", "done"),
        ]
    ):
        assert queries.quarantined([fail(1, "3"), ends]) == {}, seq
    assert "classifier" in queries.quarantined([fail(1, "3"), swap(2, "4", "other")])


def test_a_rollback_does_not_forgive_the_failed_version() -> None:
    """The swap that serves an override keeps the quarantine; one after it ended does not."""
    records = [fail(1, "3"), set_rec(2, "1", "3"), swap(3, "1")]
    assert queries.quarantined(records)["classifier"].digest == spec("3").digest
    assert queries.quarantined([*records, clear(4), swap(5, "4")]) == {}


def test_last_per_model() -> None:
    records = [swap(1, "1"), swap(2, "1", "other"), fail(3, "2")]
    last = queries.last_per_model(records)
    assert {m: e.rec.seq for m, e in last.items()} == {"classifier": 3, "other": 2}
    assert isinstance(last["classifier"].body, StepFailed)


def test_a_0_1_0_failure_is_judged_by_todays_reason_table() -> None:
    """0.1.0 called every runtime failure terminal; a damaged local copy is now repaired."""

    def legacy(seq: int, reason: str) -> object:
        detail = {"reason": reason, "message": reason, "terminal": True}  # no schema, no next
        return row(seq, "classifier", "warm", "failed", detail, desired_digest=f"{seq:064x}")

    assert queries.quarantined([legacy(1, "artifact-damaged")]) == {}
    assert queries.quarantined([legacy(1, "no-candidate")]) == {}
    [(model, held)] = queries.quarantined([legacy(1, "health-nan")]).items()
    assert (model, held.seq) == ("classifier", 1)
    assert "classifier" in queries.quarantined([legacy(2, "some-reason-0.1.0-had")])
