"""`hotswap status --watch`: progress bars and the canary stage drawn with rich on a terminal, a
line per change otherwise, Ctrl-C a clean exit; and `hotswap status` shows a running step."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from reconciler.cli.watch import render
from tests.support.kit import REPO

FETCH = {"step": "fetch", "done": 12 << 20, "total": 48 << 20, "unit": "bytes", "rate": 4 << 20,
         "eta_s": 9.0, "elapsed_s": 3.0, "phase": None, "schema": 1}  # fmt: skip
BUILD = {"step": "build", "done": 3, "total": 8, "unit": "steps", "phase": "Building engine",
         "elapsed_s": 41.0}  # fmt: skip


def _write_status(state: Path, progress: dict[str, Any] | None, version: str = "1") -> None:
    model: dict[str, Any] = {"active": {"version": version}, "candidate": None, "standby": None}
    if progress:
        model["progress"] = progress
    body = {"format": 2, "pid": 1, "updated": "now", "ready": True, "models": {"m": model}}
    tmp = state / "status.json.tmp"
    tmp.write_text(json.dumps(body))
    tmp.replace(state / "status.json")


def _cli(state: Path, *args: str, **kw: Any) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "reconciler", "status", *args]
    cmd += ["--desired", str(state.parent / "desired"), "--state-dir", str(state)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # Ctrl-C as at a terminal: a test runner's worker may ignore SIGINT, and a child inherits that.
    return subprocess.Popen(cmd, env=env, preexec_fn=_default_sigint, **kw)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _dirs(tmp_path: Path) -> Path:
    (tmp_path / "desired").mkdir()
    (tmp_path / "state").mkdir()
    return tmp_path / "state"


def test_the_live_view_has_a_bar_per_running_step_and_the_canary_counts() -> None:
    rollout = {"text": "canary stage 2/3: 10% of requests answered by the candidate, 12s in"}
    rows = [
        {"model": "a", "desired": "2", "active": {"version": "1"}, "candidate": None,
         "state": "updating", "progress": FETCH},
        {"model": "b", "desired": "4", "active": {"version": "3"}, "candidate": {"version": "4"},
         "state": "updating", "progress": BUILD, "rollout": rollout},
    ]  # fmt: skip
    daemon = {"running": True, "pid": 7, "ready": True, "updated": "now"}
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(
        render({"daemon": daemon, "models": rows, "errors": []})
    )
    text = out.getvalue()
    assert "fetch 12.0/48.0 MiB 25%, 4.0 MiB/s, ETA 9s" in text
    assert "build 3/8 steps (Building engine) 38%, 41s elapsed" in text
    assert rollout["text"] in text and "━" in text  # the bars


def test_status_shows_the_running_step(tmp_path: Path) -> None:
    state = _dirs(tmp_path)
    _write_status(state, BUILD)
    proc = _cli(state, stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=60)
    assert "build 3/8 steps (Building engine) 38%" in out.decode()


def _readline(proc: subprocess.Popen[bytes], timeout: float = 30) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "no line from --watch"
    return proc.stdout.readline().decode()


def test_watch_off_a_terminal_prints_a_line_per_change_and_leaves_on_ctrl_c(
    tmp_path: Path,
) -> None:
    state = _dirs(tmp_path)
    _write_status(state, None)
    proc = _cli(state, "--watch", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert _readline(proc).strip() == "not running: m v1; ready"
        _write_status(state, FETCH)
        assert "m v1 fetching 25%" in _readline(proc)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert proc.stderr is not None and b"Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


def test_watch_on_a_terminal_redraws_and_leaves_on_ctrl_c(tmp_path: Path) -> None:
    state = _dirs(tmp_path)
    _write_status(state, FETCH)
    main, secondary = pty.openpty()
    proc = _cli(state, "--watch", stdout=secondary, stderr=secondary)
    os.close(secondary)
    seen, deadline = b"", time.monotonic() + 30
    try:
        while b"ETA 9s" not in seen and time.monotonic() < deadline:
            if select.select([main], [], [], 0.5)[0]:
                seen += os.read(main, 65536)
        assert b"ETA 9s" in seen and b"MODEL" in seen
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
        os.close(main)
