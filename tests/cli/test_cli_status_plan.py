"""`hotswap status` and `hotswap plan` agree on "in sync", from the daemon's snapshot alone.

The snapshot is written as the daemon writes it (`write_snapshot`); no daemon runs. The case that
used to disagree: the daemon's backend was upgraded, so the served instance's build key is no
longer the one this device would build, while version and sha256 are unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli.main import main
from reconciler.cli.offline import model_in_sync
from reconciler.core.buildkey import build_key
from reconciler.core.desired import ModelSpec
from reconciler.core.observed import Observed
from reconciler.source.load import read_desired
from reconciler.state.status import FILENAME, write_snapshot
from runtime.backends import available_backends
from tests.support.kit import Kit

EXIT_OK, EXIT_PENDING = 0, 3


def served_by_daemon(
    state: Path, desired: Path, built_with: str, daemon_backends: str | None
) -> ModelSpec:
    """A snapshot in which v1 is active, built with onnxruntime `built_with`, by a daemon whose
    onnxruntime is `daemon_backends` (None: a snapshot from before they were recorded)."""
    spec = read_desired(desired).models["classifier"]
    active = {
        "version": spec.version,
        "sha256": spec.sha256,
        "build_key": build_key(spec, built_with),
        "digest": spec.digest,
        "healthy": True,
        "in_flight": 0,
        "source_file": spec.file,
    }
    repo_view = {"classifier": {"active": active, "candidate": None, "standby": None}}
    versions = (("onnxruntime", daemon_backends),) if daemon_backends else ()
    state.mkdir(parents=True, exist_ok=True)
    write_snapshot(
        state, read_desired(desired), Observed(backend_versions=versions), repo_view, True
    )
    if daemon_backends is None:
        path = state / FILENAME
        body = json.loads(path.read_text())
        del body["backend_versions"]
        path.write_text(json.dumps(body))
    return spec


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code = main([*args, "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture
def dirs(tmp_path: Path, kit: Kit) -> tuple[Path, Path]:
    desired, state = tmp_path / "desired", tmp_path / "state"
    kit.write(desired, "1")
    return desired, state


def status_and_plan(
    capsys: pytest.CaptureFixture[str], desired: Path, state: Path
) -> tuple[str, int, Any]:
    where = ["--desired", str(desired), "--state-dir", str(state)]
    code, status = cli(capsys, "status", *where)
    assert code == EXIT_OK
    (row,) = status["models"]
    plan_code, plan = cli(capsys, "plan", *where)
    return row["state"], plan_code, plan


def test_after_a_backend_upgrade_status_is_not_in_sync_and_plan_rebuilds(
    capsys: pytest.CaptureFixture[str], dirs: tuple[Path, Path]
) -> None:
    desired, state = dirs
    spec = served_by_daemon(state, desired, built_with="1.17.0", daemon_backends="1.32.0")
    state_word, plan_code, plan = status_and_plan(capsys, desired, state)
    assert state_word == "pending"  # not "in sync": the daemon will rebuild it
    assert plan_code == EXIT_PENDING
    assert "build" in [s["step"] for s in plan["steps"]]
    assert plan["in_sync"] == []
    assert not model_in_sync(state, spec)  # the operator commands' follow-up agrees


def test_with_the_daemons_own_build_key_both_say_in_sync(
    capsys: pytest.CaptureFixture[str], dirs: tuple[Path, Path]
) -> None:
    desired, state = dirs
    spec = served_by_daemon(state, desired, built_with="1.32.0", daemon_backends="1.32.0")
    state_word, plan_code, plan = status_and_plan(capsys, desired, state)
    assert state_word == "in sync"
    assert plan_code == EXIT_OK and plan["steps"] == []
    assert plan["in_sync"] == ["classifier"]
    assert model_in_sync(state, spec)


def test_the_daemons_backend_versions_win_over_this_processes(
    capsys: pytest.CaptureFixture[str], dirs: tuple[Path, Path]
) -> None:
    """The daemon may run its backends with other options (a TensorRT workspace) than the CLI
    would probe: the snapshot's versions decide, not the CLI's own."""
    desired, state = dirs
    served_by_daemon(state, desired, built_with="daemon-only", daemon_backends="daemon-only")
    state_word, plan_code, _ = status_and_plan(capsys, desired, state)
    assert (state_word, plan_code) == ("in sync", EXIT_OK)


def test_a_snapshot_without_backend_versions_falls_back_to_this_devices_backends(
    capsys: pytest.CaptureFixture[str], dirs: tuple[Path, Path]
) -> None:
    desired, state = dirs
    here = available_backends()["onnxruntime"]
    served_by_daemon(state, desired, built_with=here, daemon_backends=None)
    state_word, plan_code, _ = status_and_plan(capsys, desired, state)
    assert (state_word, plan_code) == ("in sync", EXIT_OK)
    served_by_daemon(state, desired, built_with="1.0.0-long-ago", daemon_backends=None)
    state_word, plan_code, _ = status_and_plan(capsys, desired, state)
    assert (state_word, plan_code) == ("pending", EXIT_PENDING)


def test_outside_its_update_window_both_say_the_swap_waits(
    capsys: pytest.CaptureFixture[str], dirs: tuple[Path, Path], kit: Kit
) -> None:
    import datetime as dt

    desired, state = dirs
    backends = available_backends()["onnxruntime"]
    served_by_daemon(state, desired, built_with=backends, daemon_backends=backends)
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)  # closed now, for an hour
    hours = f"{later:%H}:00-{(later + dt.timedelta(hours=1)):%H}:00"

    def in_window(doc: dict[str, Any]) -> None:
        doc["spec"]["rollout"]["window"] = {"hours": hours, "timezone": "UTC"}

    kit.write(desired, "2", mutate=in_window)
    state_word, plan_code, plan = status_and_plan(capsys, desired, state)
    assert state_word == f"waiting for update window {hours} UTC"
    assert plan_code == EXIT_PENDING
    assert plan["waiting_for_window"] == {"classifier": f"{hours} UTC"}
    steps = [s["step"] for s in plan["steps"]]
    assert "fetch" in steps and "swap" not in steps  # prepared now, swapped in the window
