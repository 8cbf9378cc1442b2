"""The canary scenario (`swap_under_load.py --scenario canary`): does a bad canary get caught,
and how fast does traffic go back?

Called by swap_under_load.main (the one CLI for both scenarios) with its parsed arguments. The
daemon starts on v1 under closed-loop load of random images (binary protocol: request_bodies.
RandomBodies, so v5 trips on about 16% of them); then the example canaries are rolled out one
after the other, each YAML written after the previous outcome plus a gap (and spread over
--duration otherwise):

- v5 "flaky" (fails ~16% of images; the error-rate gate must revert it),
- v6 "slow" (the p99 latency-ratio gate must revert it),
- v2 (both stages pass, promoted).

Each waits for its outcome, read from the daemon's journal and GET /v2/models/classifier
(wait_outcome). When the last canary was promoted (the full run, not --short), the run ends
with `hotswap rollback` to the warm standby under the same load (rollback_to_standby). This
module orchestrates and assembles the result; the figures of each canary are canary_figures',
the PNG canary_plot's; <out>/canary_under_load-<timestamp>.json and .png.

    python bench/swap_under_load.py --scenario canary [--canaries 5,6,2-canary]
                                    [--concurrency 8] [--duration 60] [--short]
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from canary_figures import (
    CANARIES,
    CANARY_NAMES,
    CanaryPhase,
    canary_phase_figures,
    canary_targets,
    print_canaries,
)
from canary_plot import plot_canary
from daemon_readings import POLL_S, JournalWatch, find_record, scrape, served_version
from example_kit import Kit, write_yaml_atomic
from load_generator import RAMP_S, REQUEST_TIMEOUT_S, RETRY_PAUSE_S, Load, sleep_until
from reporting import (
    TargetRows,
    count_by,
    latency_summary,
    log,
    machine_info,
    print_targets,
    save_results,
)
from request_bodies import Payload, RandomBodies
from rollback_to_standby import (
    ROLLBACK_TIMEOUT_S,
    RollbackPhase,
    print_rollback,
    rollback_figures,
    rollback_targets,
    run_rollback,
)
from run_setup import RunSetup
from servers import daemon_on_v1
from swap_windows import WARM_FRACTION, WINDOW_AFTER_S

CANARY_SCHEMA = "hotswap-bench/canary-under-load/v1"
CANARY_WARM_S = 3.0  # at least this much steady v1 load before the first canary
CANARY_GAP_S = 3.0  # and between one canary's outcome and the next YAML write
CANARY_SLACK_S = 45.0  # outcome deadline = write + the stages' total time + this
CANARY_TAIL_S = 2.0  # load after the last outcome
ROLLBACK_BUDGET_S = CANARY_GAP_S + ROLLBACK_TIMEOUT_S + 10.0  # extra load time it may take


def wait_outcome(
    watch: JournalWatch,
    client: httpx.Client,
    seq0: int,
    target: str,
    deadline: float,
    t0: float,
) -> tuple[str, float | None, list[dict[str, Any]]]:
    """Poll the journal (records after seq0) and the served version until the canary of
    `target` is decided: ("reverted", t, records) on a `revert` done record, ("promoted", t,
    records) once GET /v2/models shows `target` active, ("failed:<step>", ...) on a failure
    without a revert, ("timeout", None, records). t = seconds since the load started."""
    records: list[dict[str, Any]] = []
    failed_since: float | None = None
    while time.monotonic() < deadline:
        records += watch.since(records[-1]["seq"] if records else seq0)
        revert = find_record(records, "revert", "done")
        if revert is not None:
            return "reverted", revert["t_s"], records
        if served_version(client) == target:
            swap = find_record(records, "swap", "done", target)
            return "promoted", swap["t_s"] if swap else time.monotonic() - t0, records
        failure = next((r for r in records if r["phase"] == "failed"), None)
        if failure is not None:  # a revert follows at once when a candidate was loaded
            failed_since = failed_since or time.monotonic()
            if time.monotonic() - failed_since > 5.0:
                return f"failed:{failure['step']}", failure["t_s"], records
        time.sleep(POLL_S)
    records += watch.since(records[-1]["seq"] if records else seq0)
    return "timeout", None, records


def run_canary(
    kit: Kit,
    payload: Payload,
    args: argparse.Namespace,
    tmp: Path,
    out: Path,
    stem: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """v1 serving under random-image load; then each canary of `args.canaries` in turn: write
    its YAML, wait for the daemon's verdict (revert or promotion), leave a gap, next. When the
    last one was promoted (not with --short): `hotswap rollback` back to the warm standby."""
    keys = [k for k in args.canaries if k in kit.docs]
    missing = [k for k in args.canaries if k not in kit.docs]
    if missing:
        raise RuntimeError(f"the kit has no canary YAML for {missing} (examples/make_models.py)")
    daemon, yaml_path, state = daemon_on_v1(kit, tmp)
    bodies = RandomBodies(payload, args.seed, kit.flaky_threshold)
    stage_total = {
        k: sum(parse_duration(s["for"]) for s in kit.docs[k]["spec"]["rollout"].get("steps", []))
        for k in keys
    }
    hard_cap = args.duration + sum(stage_total.values()) + CANARY_SLACK_S * len(keys)
    with_rollback = bool(keys) and not args.short and CANARIES[keys[-1]] == "promote"
    if with_rollback:
        hard_cap += ROLLBACK_BUDGET_S
    rollback: RollbackPhase | None = None
    phases: list[CanaryPhase] = []
    watch = JournalWatch(state / "journal.db")
    control = httpx.Client(base_url=daemon.url, timeout=REQUEST_TIMEOUT_S, trust_env=False)
    load = Load(daemon.url, payload, args.concurrency, hard_cap, bodies=bodies, seed=args.seed)
    try:
        daemon.start()
        daemon.wait_serving(payload, "1")
        log(f"daemon pid {daemon.pid} serving v1 on {daemon.url}; canaries: {', '.join(keys)}")
        load.start(args.duration)
        watch.t0_wall = load.t0_wall
        t0 = load.t0
        hard_end = t0 + hard_cap
        warm = max(CANARY_WARM_S, WARM_FRACTION * args.duration)
        interval = (args.duration - warm) / len(keys) if keys else 0.0
        for i, key in enumerate(keys):
            not_before = t0 + warm + i * interval
            if phases and phases[-1].outcome_s is not None:
                not_before = max(not_before, t0 + phases[-1].outcome_s + CANARY_GAP_S)
            # keep the load running through the wait and this canary, or it could not be seen
            longest = not_before + stage_total[key] + CANARY_SLACK_S + CANARY_TAIL_S
            load.end_at = max(load.end_at, min(longest, hard_end))
            sleep_until(not_before)
            doc = kit.docs[key]
            target = doc["spec"]["model"]["version"]
            before, seq0 = scrape(control), watch.last_seq()
            log(f"canary {i + 1}/{len(keys)}: desired -> {CANARY_NAMES.get(key, key)}")
            t_mono, t_wall = write_yaml_atomic(yaml_path, doc)
            steps = list(doc["spec"]["rollout"].get("steps", []))
            phase = CanaryPhase(key, target, CANARIES[key], steps, t_mono - t0, t_wall)
            phase.before = before
            phases.append(phase)
            deadline = t_mono + stage_total[key] + CANARY_SLACK_S
            phase.outcome, phase.outcome_s, phase.records = wait_outcome(
                watch, control, seq0, target, min(deadline, hard_end), t0
            )
            log(
                f"  {phase.outcome}"
                + ("" if phase.outcome_s is None else f" at {phase.outcome_s - phase.write:.2f}s")
                + f" (expected: {phase.expect})"
            )
            settle = t0 + (phase.outcome_s or time.monotonic() - t0) + WINDOW_AFTER_S
            sleep_until(settle)  # the first requests after a revert: the histogram's stop
            phase.after = scrape(control)
        last_s: float | None = None  # when the last thing the run waits for happened
        if phases:
            last = phases[-1]
            last_s = last.outcome_s if last.outcome_s is not None else last.write
        if with_rollback and phases and phases[-1].outcome == "promoted":
            # The previous version is the warm standby now: go back to it by hand, same load.
            start = t0 + (phases[-1].outcome_s or time.monotonic() - t0) + CANARY_GAP_S
            load.end_at = max(load.end_at, min(start + ROLLBACK_BUDGET_S, hard_end))
            sleep_until(start)
            rollback = run_rollback(
                watch, control, state, yaml_path.parent, phases[-1].target, t0, tmp
            )
            last_s = time.monotonic() - t0
        if last_s is not None:
            load.end_at = min(max(t0 + args.duration, t0 + last_s + CANARY_TAIL_S), hard_end)
        load.join()
        alive = daemon.alive()
        journal = watch.since(0)
    finally:
        load.stop_event.set()
        control.close()
        daemon.stop()
    records = load.all_records()
    n = len(records)
    lat = np.fromiter((r.latency for r in records), np.float64, n)
    ok = np.fromiter((r.ok for r in records), bool, n)
    run_end = float(max((r.end for r in records), default=0.0))
    figures = []
    for i, phase in enumerate(phases):
        window_end = phases[i + 1].write if i + 1 < len(phases) else run_end + 1e-9
        if i + 1 == len(phases) and rollback is not None:
            window_end = rollback.start  # the promoted version's window ends at the command
        figures.append(canary_phase_figures(phase, records, window_end))
    first_write = phases[0].write if phases else run_end
    steady = ok & np.fromiter((r.start >= RAMP_S and r.end < first_write for r in records), bool, n)
    result: dict[str, Any] = {
        "requests": n,
        "failed": int((~ok).sum()),
        "failures_by_kind": count_by(r.error for r in records if not r.ok),
        "hot_requests": sum(1 for r in records if r.hot),
        "duration_s": round(run_end, 3),
        "throughput_rps": round(float(ok.sum()) / run_end, 2) if run_end > 0 else None,
        "latency": {"all": latency_summary(lat[ok]), "steady_v1": latency_summary(lat[steady])},
        "canaries": figures,
        "rollback": None if rollback is None else rollback_figures(rollback, records, run_end),
        "served_at_end": next(
            (r.version for r in reversed(records) if r.ok), None
        ),  # the last answer's version
        "daemon_alive_at_end": alive,
        "journal": journal,
    }
    kept = out / f"{stem}.daemon.log"
    shutil.copyfile(daemon.log_path, kept)
    result["daemon_log"] = str(kept)
    return result, {"records": records, "phases": phases, "rollback": rollback}


def parse_duration(text: Any) -> float:
    """A rollout step's `for` ("10s", "2m", "500ms" or a number of seconds) in seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    m = re.fullmatch(r"\s*([0-9.]+)\s*(ms|s|m|h)?\s*", str(text))
    if not m:
        return 30.0
    return float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[m.group(2) or "s"]


def evaluate_canary(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per check: each canary's outcome and failed requests, the revert times, then
    the rollback's."""
    rows = TargetRows()
    canary_targets(result["canary"]["canaries"], rows)
    rb = result["canary"].get("rollback")
    if rb is not None:
        rollback_targets(rb, rows)
    return rows


def print_canary_report(result: dict[str, Any]) -> None:
    print_canaries(result)
    rb = result["canary"].get("rollback")
    if rb is not None:
        print_rollback(rb)
    print()
    print_targets(result["targets"], "check", 48)


def main_canary(run: RunSetup) -> int:
    """The canary scenario: run it, judge it, write and print its results."""
    args, out, kit, payload, settings = run.args, run.out, run.kit, run.payload, run.settings
    stamp = run.stamp
    stem = f"canary_under_load-{stamp}"
    result: dict[str, Any] = {
        "schema": CANARY_SCHEMA,
        "timestamp": stamp,
        "config": {
            "scenario": "canary",
            "canaries": args.canaries,
            "concurrency": args.concurrency,
            "duration_s": args.duration,
            "batch": args.batch,
            "seed": args.seed,
            "short": args.short,
            "protocol": args.protocol,
            "inputs": f"standard normal, a fresh input[n,0,0,0] per request (one of "
            f"{RandomBodies.POOL} images otherwise); v5 fails a row above {kit.flaky_threshold}",
            "request_body_bytes": len(payload.body),
            "ort_intra_op_threads": settings["intra_op_threads"],
            "inference_workers": settings["workers"],
            "rollouts": {k: kit.docs[k]["spec"]["rollout"] for k in args.canaries if k in kit.docs},
            "retry_pause_after_failure_s": RETRY_PAUSE_S,
            "daemon": "python -m reconciler run --resync 30 --log-json",
        },
        "machine": machine_info(),
    }
    can, series = run_canary(kit, payload, args, run.tmp, out, stem)
    result["canary"] = can
    result["targets"] = evaluate_canary(result)
    expected_failures = sum(c["failed"] for c in can["canaries"] if c["target_version"] == "5")
    result["ok"] = (
        all(c["as_expected"] for c in can["canaries"])
        and len(can["canaries"]) == len(args.canaries)
        and can["failed"] == expected_failures  # failures only while v5 had traffic
        and all(k == "HTTP 500" for k in can["failures_by_kind"])
    )
    rb = can.get("rollback")
    if rb is not None:  # the warm-standby revert: served, no failure, a pointer change
        result["ok"] = result["ok"] and (
            rb["served_after"] == rb["to_version"]
            and rb["failed"] == 0
            and rb["pointer_change"]
            and rb["cli"]["exit_code"] == 0
        )
    save_results(
        result, out, stem, lambda png: plot_canary(result, series, png), print_canary_report
    )
    if args.short and not result["ok"]:
        outcomes = ", ".join(f"{c['name']}: {c['outcome']}" for c in can["canaries"])
        print(f"FAIL: {outcomes}; {can['failed']} failed requests", file=sys.stderr)
        return 1
    return 0
