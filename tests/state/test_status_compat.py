"""status.json across releases: this release writes every key 0.1.0 wrote (its `hotswap status`
reads them), only adds new ones, and reads 0.1.0's snapshot (no progress, no format)."""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.state.progress_record import STATUS_FORMAT, StepProgressRecord
from reconciler.state.status import observed_from_snapshot, read_snapshot, write_snapshot
from reconciler.state.summary import status_line
from tests.support.upgrade import FIXTURE


def test_a_new_snapshot_keeps_every_key_an_old_reader_uses(tmp_path: Path) -> None:
    old = json.loads((FIXTURE / "state" / "status.json").read_text())
    observed = observed_from_snapshot(old, frozenset(), frozenset(), {})
    view = {
        name: {k: m[k] for k in ("active", "candidate", "standby")}
        for name, m in old["models"].items()
    }
    step = StepProgressRecord("fetch", done=1, total=2, unit="bytes").to_json()
    body = write_snapshot(
        tmp_path, None, observed, view, True, progress={"classifier": (1, 2)},
        steps={"classifier": step},
    )  # fmt: skip
    assert body == read_snapshot(tmp_path)
    assert set(old) <= set(body) and body["format"] == STATUS_FORMAT
    for name, model in old["models"].items():
        assert set(model) - {"desired"} <= set(body["models"][name])
    entry = body["models"]["classifier"]
    assert entry["fetch"] == {"bytes": 1, "total": 2}  # 0.1.0's download field, still written
    assert StepProgressRecord.from_json(entry["progress"]) == StepProgressRecord.from_json(step)


def test_an_old_snapshot_reads_without_progress() -> None:
    old = read_snapshot(FIXTURE / "state")
    assert old is not None and "format" not in old
    model = old["models"]["classifier"]
    assert StepProgressRecord.from_json(model.get("progress")) is None
    assert status_line(old).startswith("classifier v1")


def test_the_summary_line_names_the_canary_stage_and_a_running_step() -> None:
    body = {
        "ready": True,
        "models": {
            "classifier": {
                "active": {"version": "3"},
                "candidate": {"version": "4"},
                "rollout": {"mode": "canary", "stage": 1, "stages": 3},
            },
            "detector": {"active": None, "progress": {"step": "build", "done": 2, "total": 5}},
        },
    }
    assert status_line(body) == (
        "classifier v3 canary 2/3 to v4, detector (none serving) building 40%; ready"
    )
