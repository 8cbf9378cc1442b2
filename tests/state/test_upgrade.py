"""An upgraded hotswap reads what 0.1.0 wrote: it verifies the old chain and extends it,
restores the last promoted version without the registry, keeps the operator's override in force
and the failed version quarantined, and its CLI reads the old state directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.core.outcome import Done
from reconciler.core.plan import plan
from reconciler.loop.executor import Executor
from reconciler.loop.quarantine import Quarantine
from reconciler.operator.handler import OperatorRequests
from reconciler.ops import prepare
from reconciler.ops.context import Operations
from reconciler.source.load import read_desired
from reconciler.state import queries
from reconciler.state.journal import Journal
from reconciler.state.records import FetchDone, SwapDone, parse
from reconciler.trust.policy import load_policy
from runtime.serving.slot import Repository
from tests.support import upgrade
from tests.support.records import row

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return upgrade.copy_state(tmp_path)


def test_every_swap_record_reads_back_with_the_digest_0_1_0_recorded() -> None:
    swaps = [r for r in upgrade.records_0_1_0() if (r["step"], r["phase"]) == ("swap", "done")]
    assert len(swaps) == 3
    for r in swaps:
        body = parse(row(r["seq"], r["model"], r["step"], r["phase"], r["detail"]))
        assert isinstance(body, SwapDone), body
        assert body.spec.digest == r["desired_digest"], r["seq"]


def test_the_old_chain_verifies_and_new_records_extend_it(state: Path) -> None:
    journal = Journal(state / "journal.db")
    try:
        check = journal.verify()
        assert check.ok and check.records == upgrade.RECORDS
        last = list(journal.records())[-1]
        rec = journal.append("classifier", "fetch", "done", detail=FetchDone("a" * 64, 1))
        assert (rec.seq, rec.prev_hash) == (upgrade.RECORDS + 1, last.hash)
        journal.append("classifier", "retire", "done", detail={"removed_blobs": []})
        check = journal.verify()
        assert check.ok and check.records == upgrade.RECORDS + 2
    finally:
        journal.close()


def test_restore_serves_v1_without_the_registry_and_keeps_the_override_and_quarantine(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def registry_gone(*args: object, **kwargs: object) -> None:
        raise AssertionError("restore asked the registry, which no longer exists")

    # whatever is at the records' old paths on this machine, restore must not read it
    monkeypatch.setattr(prepare, "fetch", registry_gone)
    journal = Journal(state / "journal.db")
    ctx = Operations(state, journal, Repository(), policy=load_policy(state / "trust"))
    monkeypatch.setattr(ctx.authorizer, "_read", registry_gone)
    quarantine = Quarantine()
    try:
        promoted = queries.last_promoted(journal.records())["classifier"]
        assert isinstance(promoted.body, SwapDone) and promoted.rec.seq == upgrade.LAST_SWAP_SEQ

        outcomes = Executor(ctx, None, quarantine).restore_all()

        assert isinstance(outcomes["classifier"], Done), outcomes
        active = ctx.repo.get("classifier").active
        assert (active.version, active.meta["sha256"]) == ("1", upgrade.V1_SHA256)
        assert active.meta["digest"] == upgrade.V1_DIGEST
        assert active.meta["authorization"]["keyid"] == upgrade.FIXTURE_KEYID  # from the record
        begin, done = list(journal.records())[upgrade.RECORDS :]
        assert (begin.step, begin.phase, done.phase) == ("restore", "begin", "done")
        assert begin.details == {"schema": 1, "from_seq": upgrade.LAST_SWAP_SEQ}
        assert journal.verify().ok

        held = quarantine.get("classifier")
        assert held is not None and held.digest == upgrade.V3_DIGEST
        assert "NaN" in held.message
        operator = OperatorRequests(ctx, state)
        operator.load()
        override = operator.overrides["classifier"]
        assert (override.spec.version, override.desired_version) == ("1", "3")
        assert override.seq == upgrade.OVERRIDE_SEQ and override.reason == "upgrade fixture"

        desired = read_desired(upgrade.write_desired_v3(tmp_path / "desired").parent)
        assert desired.models["classifier"].digest == upgrade.V3_DIGEST
        planned = operator.effective(desired)
        assert planned.models["classifier"].version == "1"  # the override is still served
        held_now = quarantine.snapshot()
        assert (
            plan(planned, ctx.observe(held_now.digests, held_now.errors)) == []
        )  # and it is the restored instance
    finally:
        ctx.background.shutdown()
        journal.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip


def test_the_cli_reads_the_old_state_directory(state: Path, tmp_path: Path) -> None:
    desired = upgrade.write_desired_v3(tmp_path / "desired").parent
    where = ["--state-dir", str(state), "--desired", str(desired)]

    verified = _cli("journal", "--verify", *where)
    assert verified.returncode == 0, verified.stderr
    assert f"journal ok: {upgrade.RECORDS} records, hash chain intact" in verified.stdout

    shown = _cli("journal", *where)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == upgrade.RECORDS
    assert "output 'logits' has 2000 NaN/Inf values" in lines[37]
    as_json = _cli("journal", "--json", *where)
    assert [json.loads(line) for line in as_json.stdout.splitlines()] == upgrade.records_0_1_0()

    status = _cli("status", "--json", *where)
    assert status.returncode == 0, status.stderr
    [model] = json.loads(status.stdout)["models"]
    assert (model["desired"], model["active"]["version"], model["state"]) == (
        "3",
        "1",
        "overridden",
    )
    assert model["override"]["version"] == "1" and model["override"]["seq"] == upgrade.OVERRIDE_SEQ
