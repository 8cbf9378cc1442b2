"""Operator requests on disk, and how the daemon's side takes them (no daemon process here)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reconciler.core.desired import Desired, LoadError, spec_to_json
from reconciler.loop.executor import Executor
from reconciler.loop.quarantine import Quarantine
from reconciler.operator.channel import Malformed, Request, pending, read, requests_dir, submit
from reconciler.operator.handler import OperatorRequests
from reconciler.ops.context import Operations
from reconciler.state.atomic import TEMP_SUFFIX
from reconciler.state.journal import Journal
from runtime.serving.slot import Instance, Repository
from tests.support.units import plain_spec as spec


def test_submit_writes_one_complete_private_file(tmp_path: Path) -> None:
    request, path = submit(tmp_path, "rollback", "classifier", to="1", reason="night images")
    assert path == requests_dir(tmp_path) / f"{request.id}.json"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert [p.name for p in requests_dir(tmp_path).iterdir()] == [path.name]  # no temp left
    data = json.loads(path.read_text())
    assert data == request.to_json()
    assert (data["action"], data["model"], data["to"], data["reason"]) == (
        "rollback",
        "classifier",
        "1",
        "night images",
    )
    assert data["user"] and data["requested_at"].endswith("+00:00")
    assert read(path) == request


def test_submit_refuses_what_the_daemon_would() -> None:
    with pytest.raises(ValueError, match="not a model name"):
        submit(Path("/nonexistent"), "rollback", "Bad Name")
    with pytest.raises(ValueError, match="only to rollback"):
        submit(Path("/nonexistent"), "retry", "classifier", to="1")


GOOD = {
    "id": "a" * 32,
    "action": "retry",
    "model": "classifier",
    "to": None,
    "reason": "",
    "user": "alice",
    "requested_at": "2026-01-01T00:00:00.000+00:00",
}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "is not JSON"),
        (b"\xff\xfe", "is not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({**GOOD, "extra": 1}).encode(), "unknown fields: extra"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "model"}).encode(), "missing fields"),
        (json.dumps({**GOOD, "action": "delete"}).encode(), "'delete' is not one of"),
        (json.dumps({**GOOD, "id": "b" * 32}).encode(), "the file's name"),
        (json.dumps({**GOOD, "model": "../etc"}).encode(), "not a model name"),
        (json.dumps({**GOOD, "reason": 5}).encode(), "reason must be a string"),
        (json.dumps({**GOOD, "action": "rollback", "to": 1}).encode(), "to must be a version"),
        (json.dumps({**GOOD, "reason": "x" * 5000}).encode(), "longer than"),
        (b" " * 70_000, "larger than"),
    ],
)
def test_malformed_files_are_reported_not_raised(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / f"{'a' * 32}.json"
    path.write_bytes(content)
    got = read(path)
    assert isinstance(got, Malformed), got
    assert message in got.message
    assert got.id == "a" * 32


def test_pending_is_oldest_first_and_skips_temp_files(tmp_path: Path) -> None:
    first, _ = submit(tmp_path, "retry", "classifier")
    second, _ = submit(tmp_path, "rollback", "classifier")
    directory = requests_dir(tmp_path)
    (directory / f".{'c' * 32}.json.x{TEMP_SUFFIX}").write_text("{")  # a writer mid-write
    (directory / "notes.txt").write_text("hi")
    got = pending(tmp_path)
    assert [r.id for _, r in got if isinstance(r, Request)] == [first.id, second.id]
    assert len(got) == 2
    assert pending(tmp_path / "nowhere") == []


# -- the daemon's side ---------------------------------------------------------------------------
@pytest.fixture
def quarantine() -> Quarantine:
    return Quarantine()


@pytest.fixture
def desk(tmp_path: Path, quarantine: Quarantine):
    journal = Journal(tmp_path / "journal.db")
    ctx = Operations(tmp_path, journal, Repository())
    executor = Executor(ctx, quarantine=quarantine)
    op = OperatorRequests(ctx, tmp_path, lift_quarantine=executor.lift_quarantine)
    op.load()
    yield op
    journal.close()


def records(op: OperatorRequests, step: str = "override") -> list:
    return [r for r in op.journal.records() if r.step == step]


def promote(op: OperatorRequests, version: str) -> None:
    """As if `version` had been swapped in: a swap record and its blob in the store."""
    s = spec(version)
    op.journal.append(
        "classifier", "swap", "done", to_version=version, detail={"spec": spec_to_json(s)}
    )
    op.ctx.store.path(s.sha256).write_bytes(b"model")


DESIRED_V2 = Desired({"classifier": spec("2")})


def test_a_malformed_request_is_journaled_as_refused_and_removed(desk: OperatorRequests) -> None:
    path = requests_dir(desk.state_dir) / f"{'d' * 32}.json"
    path.write_text(json.dumps({**GOOD, "id": "d" * 32, "action": "explode"}))
    assert desk.take(DESIRED_V2) == []
    assert not path.exists()
    [rec] = records(desk)
    assert (rec.model, rec.phase) == ("classifier", "failed")
    assert "explode" in rec.details["message"] and rec.details["request_id"] == "d" * 32


def test_rollback_sets_an_override_journaled_with_reason(desk: OperatorRequests) -> None:
    promote(desk, "1")
    promote(desk, "2")
    request, path = submit(desk.state_dir, "rollback", "classifier", reason="bad outputs")
    desk.take(DESIRED_V2)
    assert not path.exists()
    [rec] = records(desk)
    assert (rec.phase, rec.to_version, rec.details["action"]) == ("done", "1", "set")
    assert rec.details["reason"] == "bad outputs" and rec.details["request_id"] == request.id
    assert rec.details["desired_version"] == "2"
    planned = desk.effective(DESIRED_V2)
    assert planned.models["classifier"].version == "1"
    assert desk.snapshot()["classifier"]["seq"] == rec.seq


def test_a_refused_rollback_names_the_versions_in_store(desk: OperatorRequests) -> None:
    promote(desk, "1")
    promote(desk, "2")
    submit(desk.state_dir, "rollback", "classifier", to="7")
    desk.take(DESIRED_V2)
    [rec] = records(desk)
    assert rec.phase == "failed"
    assert rec.details["message"] == (
        "rollback classifier: v7 is not in the local store; versions you can roll back to: 1, 2"
    )
    assert desk.overrides == {}


def test_rollback_of_a_model_not_desired_is_refused(desk: OperatorRequests) -> None:
    submit(desk.state_dir, "rollback", "ghost")
    desk.take(DESIRED_V2)
    [rec] = records(desk)
    assert rec.phase == "failed" and "not in desired state" in rec.details["message"]


def test_a_held_model_can_be_rolled_back(desk: OperatorRequests) -> None:
    promote(desk, "1")
    promote(desk, "2")
    desk.ctx.repo.slot("classifier").activate(Instance("classifier", "2", None, {}))
    held = Desired({}, errors=(LoadError("/desired/classifier.yaml", "bad", model="classifier"),))
    submit(desk.state_dir, "rollback", "classifier")
    desk.take(held)
    assert desk.overrides["classifier"].desired_version is None
    assert desk.effective(held).models["classifier"].version == "1"


def test_an_override_ends_when_desired_changes_version_and_after_restart_stays_ended(
    desk: OperatorRequests,
) -> None:
    promote(desk, "1")
    promote(desk, "2")
    submit(desk.state_dir, "rollback", "classifier")
    desk.take(DESIRED_V2)
    # a restart rebuilds it from the journal
    again = OperatorRequests(desk.ctx, desk.state_dir)
    again.load()
    assert again.overrides.keys() == {"classifier"}
    assert again.effective(DESIRED_V2).models["classifier"].version == "1"
    planned = again.effective(Desired({"classifier": spec("3")}))
    assert planned.models["classifier"].version == "3"
    clear = records(again)[-1]
    assert clear.details["action"] == "clear"
    assert clear.details["why"] == "desired version changed 2 -> 3"
    third = OperatorRequests(desk.ctx, desk.state_dir)
    third.load()
    assert third.overrides == {}


def test_cancel_ends_the_override_or_is_refused(desk: OperatorRequests) -> None:
    submit(desk.state_dir, "cancel-rollback", "classifier")
    desk.take(DESIRED_V2)
    assert records(desk)[-1].phase == "failed"
    promote(desk, "1")
    promote(desk, "2")
    submit(desk.state_dir, "rollback", "classifier")
    desk.take(DESIRED_V2)
    submit(desk.state_dir, "cancel-rollback", "classifier", reason="fixed upstream")
    desk.take(DESIRED_V2)
    last = records(desk)[-1]
    assert (last.phase, last.details["action"]) == ("done", "clear")
    assert last.details["why"] == "cancelled by the operator: fixed upstream"
    assert desk.effective(DESIRED_V2).models["classifier"].version == "2"


def test_retry_clears_the_quarantine_once(desk: OperatorRequests, quarantine: Quarantine) -> None:
    quarantine.quarantine("classifier", spec("2").digest, "health-check: NaN")
    request, _ = submit(desk.state_dir, "retry", "classifier", reason="registry fixed")
    assert desk.take(DESIRED_V2) == ["classifier"]
    assert "classifier" not in quarantine and quarantine.last_error("classifier") is None
    [rec] = records(desk, "retry")
    assert rec.details["cleared_digest"] == spec("2").digest
    assert rec.details["previous_error"] == "health-check: NaN"
    assert rec.details["request_id"] == request.id


def test_a_request_already_journaled_is_not_applied_twice(desk: OperatorRequests) -> None:
    """A crash after the journal record but before the file was removed."""
    promote(desk, "1")
    promote(desk, "2")
    _, path = submit(desk.state_dir, "rollback", "classifier")
    content = path.read_bytes()
    desk.take(DESIRED_V2)
    path.write_bytes(content)  # as if never removed
    again = OperatorRequests(desk.ctx, desk.state_dir)
    again.load()
    again.take(DESIRED_V2)
    assert not path.exists()
    assert len(records(again)) == 1


def test_a_retry_in_the_journal_ends_the_quarantine_after_a_restart(
    desk: OperatorRequests, quarantine: Quarantine
) -> None:
    digest = spec("3").digest
    desk.journal.append(
        "classifier",
        "health-check",
        "failed",
        desired_digest=digest,
        detail={"terminal": True, "message": "NaN"},
    )
    executor = Executor(desk.ctx, quarantine=quarantine)
    executor.restore_all()  # reloads the quarantine
    assert quarantine.get("classifier") == (digest, "NaN")
    submit(desk.state_dir, "retry", "classifier")
    desk.take(Desired({"classifier": spec("3")}))
    quarantine.clear("classifier")  # as after a restart: only the journal remembers
    executor.restore_all()
    assert "classifier" not in quarantine
