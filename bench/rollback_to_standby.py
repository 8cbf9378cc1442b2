"""The canary scenario's last phase: `hotswap rollback` to the warm standby under the same
load, run as an operator would, and what it cost the clients.

Called by canary_under_load.run_canary when the last canary was promoted (the full run, not
--short): the daemon kept the previous version (v1) loaded as the warm standby, so going back
to it must be one pointer change. run_rollback() runs the venv's `hotswap` CLI as a subprocess
(its wall time and exit code are part of the figures) and scrapes /metrics around it;
rollback_figures() proves the pointer change from the journal (override done, then swap done,
no loading step in between) and measures the clients' side; rollback_targets() and
print_rollback() are its rows and its section of the canary report.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from daemon_readings import (
    POLL_S,
    JournalWatch,
    Samples,
    bucket,
    find_record,
    record_time,
    revert_histogram,
    revert_text,
    scrape,
    served_version,
)
from example_kit import MODEL
from load_generator import Rec, sleep_until
from reporting import TargetRows, count_by, detail_line, fmt, log, ms
from servers import child_env, hotswap_cli
from swap_windows import WINDOW_AFTER_S

ROLLBACK_WAIT_S = 30.0  # the CLI's --wait (it follows the journal until v1 serves)
ROLLBACK_TIMEOUT_S = ROLLBACK_WAIT_S + 15.0  # the subprocess is killed after this long
ROLLBACK_TARGET_MS = 10.0  # hotswap_revert_seconds mean: decision -> first request on v1
# Steps that load or judge a version: none may run between the override and the swap, or the
# rollback was not the pointer change to the standby it should be.
LOADING_STEPS = {"fetch", "verify", "build", "warm", "health-check", "rollout"}


@dataclass
class RollbackPhase:
    """`hotswap rollback classifier` after the promotion, under the same load."""

    argv: list[str]
    frm: str  # the version serving before (the promoted canary's)
    to: str = "1"  # the warm standby it goes back to
    start: float = 0.0  # seconds since the load started, just before the subprocess starts
    start_wall: float = 0.0
    wall_s: float | None = None  # the CLI's own wall time
    rc: int | None = None  # its exit code (None: killed after ROLLBACK_TIMEOUT_S)
    stdout: str = ""
    stderr: str = ""
    records: list[dict[str, Any]] | None = None  # journal records after the command started
    served_after: str | None = None  # GET /v2/models/classifier 1 s after the swap
    before: Samples | None = None
    after: Samples | None = None


def run_rollback(
    watch: JournalWatch,
    control: httpx.Client,
    state: Path,
    desired: Path,
    frm: str,
    t0: float,
    cwd: Path,
) -> RollbackPhase:
    """Run `hotswap rollback` as an operator would and wait for its swap record; the histogram
    is scraped before the command and 1 s after the swap (its stop: the first request routed)."""
    rb = RollbackPhase(
        [*hotswap_cli(), "rollback", MODEL, "--reason", "bench", "--state-dir", str(state),
         "--desired", str(desired), "--wait", f"{ROLLBACK_WAIT_S:g}"],
        frm,
    )  # fmt: skip
    rb.before, seq0 = scrape(control), watch.last_seq()
    log(f"rollback: hotswap rollback {MODEL} --reason bench (v{frm} -> warm standby v{rb.to})")
    t_start = time.monotonic()
    rb.start, rb.start_wall = t_start - t0, time.time()
    try:
        proc = subprocess.run(
            rb.argv,
            capture_output=True,
            text=True,
            env=child_env(),
            cwd=cwd,
            timeout=ROLLBACK_TIMEOUT_S,
        )
        rb.rc, rb.stdout, rb.stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as e:
        out = e.stdout or ""
        rb.stdout = out.decode(errors="replace") if isinstance(out, bytes) else out
        rb.stderr = f"killed after {ROLLBACK_TIMEOUT_S:g} s"
    t_end = time.monotonic()
    rb.wall_s = t_end - t_start
    # The CLI returns once the status snapshot shows v1; the journal's swap record is written
    # in the same step. Poll a little for it all the same (bounded).
    records: list[dict[str, Any]] = []
    deadline = t_end + 5.0
    while True:
        records += watch.since(records[-1]["seq"] if records else seq0)
        if find_record(records, "swap", "done", rb.to) or time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    swap_done = record_time(records, "swap", "done", rb.to)
    sleep_until(t0 + (swap_done if swap_done is not None else t_end - t0) + WINDOW_AFTER_S)
    records += watch.since(records[-1]["seq"] if records else seq0)
    rb.records = records
    rb.after = scrape(control)
    rb.served_after = served_version(control)
    log(
        f"  rollback exit {rb.rc} after {rb.wall_s:.2f}s; serving v{rb.served_after}"
        + (
            ""
            if swap_done is None
            else f", swap done {swap_done - rb.start:.3f}s after the command"
        )
    )
    return rb


def rollback_figures(rb: RollbackPhase, records: list[Rec], run_end: float) -> dict[str, Any]:
    """The warm-standby revert seen by the clients (requests still running or started once the
    command started), the journal and the daemon's histogram."""
    jr = rb.records or []
    sel = [r for r in records if r.end >= rb.start]
    ok = [r for r in sel if r.ok]
    bad = [r for r in sel if not r.ok]
    override = next(
        (r for r in jr if r["step"] == "override" and r["phase"] == "done"
         and (r["detail"] or {}).get("action") == "set"),
        None,
    )  # fmt: skip
    swap_begin = find_record(jr, "swap", "begin", rb.to)
    swap_done = find_record(jr, "swap", "done", rb.to)
    failed = [r for r in jr if r["phase"] == "failed"]
    between: list[dict[str, Any]] = []
    if override is not None:
        stop = swap_done["seq"] if swap_done else float("inf")
        between = [r for r in jr if override["seq"] < r["seq"] < stop]
    loading = [f"{r['step']} {r['phase']}" for r in between if r["step"] in LOADING_STEPS]
    first_v1 = min((r.end for r in ok if r.version == rb.to), default=None)
    last_old = max((r.end for r in ok if r.version == rb.frm), default=None)
    t_swap = swap_done["t_s"] if swap_done else None

    def delta(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else ms(a - b)

    return {
        "from_version": rb.frm,
        "to_version": rb.to,
        "command": rb.argv,
        "command_s": round(rb.start, 4),
        "cli": {
            "exit_code": rb.rc,
            "wall_ms": ms(rb.wall_s),
            "stdout": rb.stdout.strip()[-500:],
            "stderr": rb.stderr.strip()[-500:],
        },
        "journal": {
            "override_done_s": override["t_s"] if override else None,
            "override": None
            if override is None
            else {
                k: (override["detail"] or {}).get(k)
                for k in ("action", "reason", "user", "desired_version", "request_id")
            },
            "swap_begin_s": swap_begin["t_s"] if swap_begin else None,
            "swap_done_s": t_swap,
            "steps_between_override_and_swap_done": [f"{r['step']} {r['phase']}" for r in between],
            "loading_steps_between": loading,
            "failed_records": [
                {"step": r["step"], "message": (r["detail"] or {}).get("message")} for r in failed
            ],
            "records": [f"{r['step']} {r['phase']}" for r in jr],
        },
        "pointer_change": override is not None and swap_done is not None and not loading,
        "served_after": rb.served_after,
        "requests": len(sel),
        "failed": len(bad),
        "failures_by_kind": count_by(r.error for r in bad),
        "answered_by_version": count_by(r.version for r in ok),
        "client": {
            "command_to_override_ms": delta(override["t_s"] if override else None, rb.start),
            "command_to_swap_done_ms": delta(t_swap, rb.start),
            "override_to_swap_done_ms": delta(t_swap, override["t_s"] if override else None),
            "command_to_first_v1_200_ms": delta(first_v1, rb.start),
            "swap_done_to_first_v1_200_ms": delta(first_v1, t_swap),
            "first_v1_200_s": None if first_v1 is None else round(first_v1, 4),
            "last_old_version_answer_s": None if last_old is None else round(last_old, 4),
            "swap_done_to_last_old_version_answer_ms": delta(last_old, t_swap),
            "old_version_started_after_swap_done": None
            if t_swap is None
            else sum(1 for r in ok if r.version == rb.frm and r.start > t_swap),
        },
        "revert_seconds": revert_histogram(rb.before or [], rb.after or []),
        "window_s": [round(rb.start, 4), round(run_end, 4)],
    }


def rollback_targets(rb: dict[str, Any], rows: TargetRows) -> None:
    """The rollback's rows: served version, failed requests, pointer change, revert, CLI."""
    cl, rev, j = rb["client"], rb["revert_seconds"], rb["journal"]
    rows.add(
        "rollback_served_version",
        rb["served_after"],
        rb["to_version"],
        rb["served_after"] == rb["to_version"],
        f"hotswap rollback: v{rb['from_version']} -> warm standby v{rb['to_version']} "
        "(GET /v2/models 1 s after the swap)",
    )
    rows.add(
        "rollback_failed_requests",
        rb["failed"],
        0,
        rb["failed"] == 0,
        f"{rb['requests']} requests from the command on; answered {rb['answered_by_version']}",
    )
    rows.add(
        "rollback_loading_steps_between",
        len(j["loading_steps_between"]),
        0,
        rb["pointer_change"],
        "journal between override done and swap done: "
        + (", ".join(j["steps_between_override_and_swap_done"]) or "nothing")
        + ("" if j["swap_done_s"] is not None else " (no swap done record)"),
    )
    rows.add(
        "rollback_revert_ms_daemon_mean",
        rev["mean_ms"],
        ROLLBACK_TARGET_MS,
        None if rev["mean_ms"] is None else rev["mean_ms"] <= ROLLBACK_TARGET_MS,
        f"hotswap_revert_seconds: {rev['count']} observed, bucket {bucket(rev)} (target)",
    )
    rows.add(
        "rollback_command_to_first_v1_200_ms",
        cl["command_to_first_v1_200_ms"],
        None,
        None,
        f"journal swap done -> first v1 200: {fmt(cl['swap_done_to_first_v1_200_ms'])} ms",
    )
    rows.add(
        "rollback_cli_exit_code",
        rb["cli"]["exit_code"],
        0,
        rb["cli"]["exit_code"] == 0,
        f"CLI wall time {fmt(rb['cli']['wall_ms'])} ms",
    )


def print_rollback(rb: dict[str, Any]) -> None:
    """The rollback's section of the canary report."""
    j, cl, rev, cli = rb["journal"], rb["client"], rb["revert_seconds"], rb["cli"]
    print()
    print(
        f"rollback to the warm standby: v{rb['from_version']} -> v{rb['to_version']}, "
        f"`hotswap rollback {MODEL} --reason bench` run at {rb['command_s']:.2f} s; "
        f"serving after: v{rb['served_after']}"
    )
    detail_line("CLI: exit code / wall time", f"{cli['exit_code']} / {fmt(cli['wall_ms'])} ms")
    detail_line(
        "command -> override / swap done (journal)",
        f"{fmt(cl['command_to_override_ms'])} / {fmt(cl['command_to_swap_done_ms'])} ms "
        f"(override -> swap done {fmt(cl['override_to_swap_done_ms'])} ms)",
    )
    detail_line(
        "journal: override -> swap done",
        ", ".join(j["steps_between_override_and_swap_done"]) or "nothing in between",
    )
    detail_line(
        "client: command -> first v1 200",
        f"{fmt(cl['command_to_first_v1_200_ms'])} ms",
    )
    detail_line(
        "client: journal swap done -> first v1 200",
        f"{fmt(cl['swap_done_to_first_v1_200_ms'])} ms; last v{rb['from_version']} answer "
        f"{fmt(cl['swap_done_to_last_old_version_answer_ms'])} ms, "
        f"{cl['old_version_started_after_swap_done']} started after",
    )
    detail_line(
        "daemon: hotswap_revert_seconds",
        revert_text(rev),
    )
    detail_line(
        "requests / failed",
        f"{rb['requests']} / {rb['failed']} {rb['failures_by_kind'] or ''}; "
        f"answered {rb['answered_by_version']}",
    )
