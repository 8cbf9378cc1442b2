"""Updates under load and the window around each: when to update, and what the requests
overlapping each update saw compared with the steady state between them.

Called by swap_under_load.run_hotswap (the daemon's v1 <-> v2 YAML swaps) and
baselines.run_plain_restart (the plain server's copy + restart), the same way for both: the
update is a callable, so both are timed, spread and analysed alike and only the action
differs. A swap window is [the update's start, first response from the new version + 1 s]: it
starts at the update because all the work for it competes with serving from then on, and ends
1 s after the new version first answers so that requests still finishing on the old instance,
its retirement and the first requests on the new session are all inside. The canary scenario
uses the same warm-up and settle times (WARM_FRACTION, WINDOW_AFTER_S).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from daemon_readings import dispatch_times
from load_generator import GRACE_S, RAMP_S, Load, Rec, sleep_until
from reporting import count_by, latency_summary, log, ms, spread

WARM_FRACTION = 0.2  # the first 20% of the run is steady state before the first swap
WINDOW_AFTER_S = 1.0  # swap window = [write, first response of the new version + this]
SWAP_TIMEOUT_S = 30.0  # a swap not serving after this long is recorded as not observed


@dataclass
class Swap:
    index: int
    target: str
    write: float  # seconds since load start (the YAML replace / the start of the file copy)
    write_wall: float  # time.time() of the same moment, for the daemon's log timestamps
    first_new: float | None = None  # first response from the target version (s since start)


def run_with_swaps(
    load: Load,
    duration: float,
    n_swaps: int,
    action: Callable[[int, str], tuple[float, float]],
) -> list[Swap]:
    """Run `load` for `duration` with n swaps spread evenly after the warm period, each waiting
    for the previous one to be serving. `action(i, target)` performs the update and returns the
    (monotonic, wall) time it began. The load is extended (at most GRACE_S) to see the last
    swap's window through."""
    load.start(duration)
    t0 = load.t0
    hard_end = t0 + duration + GRACE_S
    warm = WARM_FRACTION * duration
    interval = (duration - warm) / n_swaps if n_swaps else 0.0
    swaps: list[Swap] = []

    def wait_observed(sw: Swap) -> None:
        deadline = min(t0 + sw.write + SWAP_TIMEOUT_S, hard_end)
        while load.first_new is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if load.first_new is not None:
            sw.first_new = load.first_new - t0

    for i in range(n_swaps):
        sleep_until(t0 + warm + i * interval)
        if swaps:
            wait_observed(swaps[-1])
        if time.monotonic() >= hard_end - 1.0:
            log(f"no time left for swap {i + 1}/{n_swaps}; stopping the swaps here")
            break
        target = "2" if i % 2 == 0 else "1"
        # keep the load running while this swap is pending, or it could never be observed
        load.end_at = max(load.end_at, min(time.monotonic() + SWAP_TIMEOUT_S, hard_end))
        load.expect(target)
        t_mono, t_wall = action(i, target)
        swaps.append(Swap(i, target, t_mono - t0, t_wall))
    if swaps:
        wait_observed(swaps[-1])
        last = swaps[-1]
        tail = (last.first_new if last.first_new is not None else last.write) + WINDOW_AFTER_S
        load.end_at = min(max(t0 + duration, t0 + tail + 0.5), hard_end)
    load.join()
    return swaps


def swap_window(sw: Swap, end: float) -> tuple[float, float]:
    if sw.first_new is not None:
        return sw.write, sw.first_new + WINDOW_AFTER_S
    return sw.write, min(sw.write + SWAP_TIMEOUT_S, end)


def max_gap(completions: np.ndarray, lo: float, hi: float) -> float | None:
    """Longest time without a successful response across [lo, hi] (completions sorted)."""
    if completions.size == 0:
        return None
    # from the last response before the window to the first one after it
    i = max(0, int(np.searchsorted(completions, lo)) - 1)
    j = int(np.searchsorted(completions, hi, side="right"))
    points = completions[i : j + 1]
    if points.size < 2:
        return float(hi - lo)
    return float(np.diff(points).max())


def analyze(
    records: list[Rec], swaps: list[Swap], rss: list[tuple[float, int]] | None = None
) -> dict[str, Any]:
    n = len(records)
    start = np.fromiter((r.start for r in records), np.float64, n)
    lat = np.fromiter((r.latency for r in records), np.float64, n)
    ok = np.fromiter((r.ok for r in records), bool, n)
    end = start + lat
    run_end = float(end.max()) if n else 0.0
    windows = [swap_window(sw, run_end) for sw in swaps]
    in_window = np.zeros(n, bool)
    for lo, hi in windows:
        in_window |= (start <= hi) & (end >= lo)
    steady = ok & ~in_window & (start >= RAMP_S)
    completions = np.sort(end[ok])

    per_swap = []
    for sw, (lo, hi) in zip(swaps, windows, strict=True):
        sel = (start <= hi) & (end >= lo)
        entry: dict[str, Any] = {
            "index": sw.index,
            "target_version": sw.target,
            "write_s": round(sw.write, 4),
            "first_new_response_s": None if sw.first_new is None else round(sw.first_new, 4),
            "observed": sw.first_new is not None,
            "write_to_serving_ms": ms(None if sw.first_new is None else sw.first_new - sw.write),
            "window_s": [round(lo, 4), round(hi, 4)],
            "requests": int(sel.sum()),
            "failed": int((sel & ~ok).sum()),
            "latency": latency_summary(lat[sel & ok]),
            "max_gap_between_responses_ms": ms(max_gap(completions, lo, hi)),
        }
        if rss:
            inside = [v for t, v in rss if lo <= t <= hi]
            entry["peak_rss_bytes"] = max(inside) if inside else None
        per_swap.append(entry)

    duration = run_end if n else 0.0
    observed = [s for s in per_swap if s["observed"]]
    result: dict[str, Any] = {
        "requests": n,
        "failed": int((~ok).sum()),
        "failed_in_swap_windows": int((~ok & in_window).sum()),
        "failures_by_kind": count_by(r.error for r in records if not r.ok),
        "duration_s": round(duration, 3),
        "throughput_rps": round(float(ok.sum()) / duration, 2) if duration > 0 else None,
        "latency": {
            "all": latency_summary(lat[ok]),
            "steady": latency_summary(lat[steady]),
            "swap_windows": latency_summary(lat[ok & in_window]),
        },
        "swaps_requested": len(swaps),
        "swaps_observed": len(observed),
        "write_to_serving_ms": spread([s["write_to_serving_ms"] for s in observed]),
        "max_gap_between_responses_ms": spread(
            [
                s["max_gap_between_responses_ms"]
                for s in per_swap
                if s["max_gap_between_responses_ms"] is not None
            ]
        ),
        "swaps": per_swap,
    }
    return result


def add_detection(result: dict[str, Any], swaps: list[Swap], log_path: Path) -> None:
    """Detection = YAML write -> first dispatch (planned pass) that works towards the target.

    The dispatch line's timestamp is taken after the pass has read desired state, observed and
    planned; its planned_in_ms says how much of the detection time that pass itself took."""
    dispatches = dispatch_times(log_path)
    detections = []
    for sw, entry in zip(swaps, result["swaps"], strict=True):
        pattern = re.compile(rf"\bv{re.escape(sw.target)}\b")
        found = next(
            (
                (ts, steps, planned)
                for ts, steps, planned in dispatches
                if ts >= sw.write_wall and any(pattern.search(s) for s in steps)
            ),
            None,
        )
        entry["detection_ms"] = None if found is None else ms(found[0] - sw.write_wall)
        entry["dispatched_steps"] = None if found is None else found[1]
        entry["dispatch_planned_in_ms"] = None if found is None else found[2]
        if found is not None:
            detections.append(entry["detection_ms"])
    result["detection_ms"] = spread(detections)
