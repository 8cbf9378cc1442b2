"""Swap model versions under load: what does a hotswap cost the requests being served?

The bench's command line (`make bench`), for both scenarios, and the swap scenario itself.
Starts the real daemon (`python -m reconciler run ...`) on a free 127.0.0.1 port with the
example classifier v1, drives closed-loop load at a fixed concurrency (one thread and one
keep-alive `httpx.Client` per worker, the same pre-encoded V2 JSON request each time), and swaps
v1 -> v2 -> v1 ... N times by atomically replacing the desired YAML (temp file + os.replace, as
git and careful editors do). Measured, not asserted (except by --short):

- requests, failed requests, throughput; p50/p99/max latency in steady state and in swap windows
- per swap: YAML write -> first response from the new version; detection (write -> the daemon's
  `reconcile.dispatch` log line for the new version); the longest gap between two successful
  responses
- the daemon's RSS (sampled every 50 ms): with one version loaded, and its peak during swaps

Swap window = [YAML write, first response from the new version + 1 s] (swap_windows.py says
why). Requests whose [start, end] overlaps a window count as "swap window"; the rest, after a
short ramp-up, are "steady state".

Baselines, same model, same request, same load generator, run after the daemon has stopped
(baselines.py): (a) bare ONNX Runtime in-process (the cost of serving at all), and (b)
bench/plain_server.py, a plain single-model V2 server updated the classic way: copy the new
model file over the old one and restart the process. Ratios against the targets are printed
and written to <out>/swap_under_load-<timestamp>.json, with a PNG of latency over time.

    python bench/swap_under_load.py [--concurrency 8] [--duration 60] [--swaps 20] [--batch 1]
                                    [--out bench/results] [--no-baselines] [--seed 0] [--short]

--short: concurrency 4, 6 s, 2 swaps, no baselines; exits 1 if any request failed or a swap
was not observed (this form runs in `make test`). All traffic goes to 127.0.0.1; every loop is
bounded in time and count; the servers are always stopped and temp dirs removed.

--scenario canary: the canary rollouts v5 (flaky), v6 (slow), v2 and the rollback to the warm
standby under random-image load; see canary_under_load.py.

    python bench/swap_under_load.py --scenario canary [--canaries 5,6,2-canary]
                                    [--concurrency 8] [--duration 60] [--short]

This file holds the CLI and the swap scenario's orchestration (run_hotswap, run_swap_scenario);
its verdict, report and plot are swap_report's, its baselines baselines'. What both scenarios
share is in the modules beside it, each named for what it is (run_setup, example_kit,
request_bodies, load_generator, servers, daemon_readings, daemon_memory, swap_windows,
reporting, plotting); bench/README.md lists them all.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from baselines import run_baselines
from canary_under_load import CANARIES, main_canary
from daemon_memory import RssSampler, rss_report
from example_kit import REPO, Kit, write_yaml_atomic
from load_generator import RAMP_S, REQUEST_TIMEOUT_S, RETRY_PAUSE_S, Load
from reporting import log, machine_info, save_results
from request_bodies import Payload
from run_setup import RunSetup, prepare
from servers import daemon_on_v1
from swap_report import evaluate_targets, plot, print_report
from swap_windows import WARM_FRACTION, WINDOW_AFTER_S, add_detection, analyze, run_with_swaps

SCHEMA = "hotswap-bench/swap-under-load/v1"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Swap model versions under closed-loop load against the real hotswap daemon "
        "and report failures, latency, swap time, detection time and RSS, with baselines.",
        epilog="Results: <out>/swap_under_load-<timestamp>.json and .png. See bench/README.md.",
    )
    p.add_argument(
        "--scenario",
        choices=["swap", "canary"],
        default="swap",
        help="swap: v1<->v2 swaps (default); canary: v1 serving, then the canaries v5 (flaky: "
        "reverted by the error-rate gate), v6 (slow: by the latency gate), v2 (promoted)",
    )
    p.add_argument(
        "--canaries",
        default=",".join(CANARIES),
        help="canary scenario: which canaries, in order (default %(default)s)",
    )
    p.add_argument("--concurrency", type=int, default=8, help="closed-loop workers (default 8)")
    p.add_argument(
        "--duration",
        type=float,
        default=60.0,
        help="seconds of load (default 60); canary: the canaries start spread over it, each "
        "after the previous one's outcome, and the load runs until the last outcome",
    )
    p.add_argument("--swaps", type=int, default=20, help="v1<->v2 swaps (default 20)")
    p.add_argument("--batch", type=int, default=1, help="images per request, 1-8 (default 1)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="results dir")
    p.add_argument("--no-baselines", action="store_true", help="skip bare ORT and plain server")
    p.add_argument("--seed", type=int, default=0, help="seed of the input tensor (default 0)")
    p.add_argument(
        "--protocol",
        choices=["json", "binary"],
        default=None,
        help="tensors as V2 JSON lists (swap's default) or with the V2 binary tensor extension "
        "(canary's default and only choice: a new random image each request)",
    )
    p.add_argument(
        "--short",
        action="store_true",
        help="concurrency 4, 6 s, 2 swaps, no baselines; exit 1 on any failed request. With "
        "--scenario canary: concurrency 4, v5 only; exit 1 unless it is reverted",
    )
    args = p.parse_args(argv)
    args.canaries = [k.strip() for k in args.canaries.split(",") if k.strip()]
    if args.scenario == "canary":
        if args.protocol == "json":
            p.error("--scenario canary sends a new random image each request: --protocol binary")
        args.protocol = "binary"
        unknown = [k for k in args.canaries if k not in CANARIES]
        if unknown or not args.canaries:
            p.error(f"--canaries: choose from {', '.join(CANARIES)} (got {args.canaries})")
        if args.short:
            args.concurrency, args.duration, args.canaries = 4, 6.0, ["5"]
    else:
        args.protocol = args.protocol or "json"
        if args.short:
            args.concurrency, args.duration, args.swaps, args.no_baselines = 4, 6.0, 2, True
    if not 1 <= args.concurrency <= 64:
        p.error("--concurrency must be 1..64")
    if not 2.0 <= args.duration <= 3600:
        p.error("--duration must be 2..3600 seconds")
    if not 0 <= args.swaps <= 500:
        p.error("--swaps must be 0..500")
    if not 1 <= args.batch <= 8:
        p.error("--batch must be 1..8 (the example model's max shape)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    tmp = Path(tempfile.mkdtemp(prefix="hotswap-bench-"))
    scenario = main_canary if args.scenario == "canary" else run_swap_scenario
    try:
        return scenario(prepare(args, out, stamp, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_hotswap(
    kit: Kit, payload: Payload, args: argparse.Namespace, tmp: Path, out: Path, stem: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    daemon, yaml_path, _ = daemon_on_v1(kit, tmp)
    log_path = daemon.log_path
    sampler: RssSampler | None = None
    try:
        daemon.start()
        daemon.wait_serving(payload, "1")
        log(f"daemon pid {daemon.pid} serving v1 on {daemon.url}; load for {args.duration:.0f}s")
        sampler = RssSampler(daemon.pid)
        time.sleep(0.3)
        idle_rss = sampler.rss()  # v1 loaded, no load yet
        load = Load(daemon.url, payload, args.concurrency, args.duration)
        sampler.start()

        def swap(i: int, target: str) -> tuple[float, float]:
            log(f"swap {i + 1}/{args.swaps}: desired -> v{target}")
            return write_yaml_atomic(yaml_path, kit.docs[target])

        swaps = run_with_swaps(load, args.duration, args.swaps, swap)
        sampler.stop()
        alive = daemon.alive()
    finally:
        if sampler is not None:
            sampler.stop()
        daemon.stop()
    records = load.all_records()
    rss = [(t - load.t0, v) for t, v in sampler.samples]  # seconds since the load started
    result = analyze(records, swaps, rss)
    add_detection(result, swaps, log_path)
    result["rss"] = rss_report(
        rss, swaps, result["swaps"], result["duration_s"], idle_rss, kit.models["2"], args.batch
    )
    result["daemon_alive_at_end"] = alive
    kept = out / f"{stem}.daemon.log"  # small; what the daemon did and when
    shutil.copyfile(log_path, kept)
    result["daemon_log"] = str(kept)
    return result, {"records": records, "swaps": swaps, "rss": rss}


def run_swap_scenario(run: RunSetup) -> int:
    """The swap scenario: the hotswap run, the baselines, the verdict, the files."""
    args, out, kit, payload, settings = run.args, run.out, run.kit, run.payload, run.settings
    stamp, tmp = run.stamp, run.tmp
    stem = f"swap_under_load-{stamp}"
    config = {
        "scenario": "swap",
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "swaps": args.swaps,
        "batch": args.batch,
        "seed": args.seed,
        "short": args.short,
        "baselines": not args.no_baselines,
        "protocol": args.protocol,
        "request_body_bytes": len(payload.body),
        "ort_intra_op_threads": settings["intra_op_threads"],
        "inference_workers": settings["workers"],
        "warm_fraction": WARM_FRACTION,
        "ramp_s": RAMP_S,
        "swap_window": f"[YAML write, first response of the new version + {WINDOW_AFTER_S} s]",
        "retry_pause_after_failure_s": RETRY_PAUSE_S,
        "request_timeout_s": REQUEST_TIMEOUT_S,
        "daemon": "python -m reconciler run --resync 30 --log-json",
    }
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "timestamp": stamp,
        "config": config,
        "machine": machine_info(),
    }
    hot, hot_series = run_hotswap(kit, payload, args, tmp, out, stem)
    result["hotswap"] = hot
    series: dict[str, Any] = {"hotswap": hot_series}
    result["baselines"] = {"bare_ort": None, "plain_restart": None}
    if not args.no_baselines:
        result["baselines"], series["plain_restart"], result["ratios"] = run_baselines(
            kit, payload, args, tmp, settings, hot
        )
    result["targets"] = evaluate_targets(result)
    result["ok"] = hot["failed"] == 0 and hot["swaps_observed"] == hot["swaps_requested"]
    save_results(result, out, stem, lambda png: plot(result, series, png), print_report)
    if args.short and not result["ok"]:
        print(
            f"FAIL: {hot['failed']} failed requests, "
            f"{hot['swaps_observed']}/{hot['swaps_requested']} swaps observed",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
