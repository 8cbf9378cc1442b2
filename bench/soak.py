"""Soak: many swaps under load, and whether the daemon's memory, fds or threads grow with them.

Starts the real daemon on the example classifier v1 and closed-loop load (load_generator.Load),
then swaps v1 -> v2 -> v1 ... `--swaps` times by replacing the desired YAML, each swap waiting
until the new version answers. After each swap (and `--settle` seconds for the retirement that
follows it) the daemon's RSS, open file descriptors and threads are sampled (psutil). Growth
per swap is the least-squares slope over the swaps after the first `WARMUP_FRACTION` (caches,
arenas and the standby fill up first); a leak shows as a slope that does not go to zero.

    python bench/soak.py [--swaps 500] [--concurrency 4] [--reload] [--out bench/results]
    python bench/soak.py --short    # 20 swaps, 2 workers; exit 1 on a failure or a lost swap

--reload: keep_standby off, so every swap loads, warms and proves the version anew and frees
the old one (the default keeps the previous version as the warm standby, as the examples do,
and a swap back is a pointer change). Results: <out>/soak-<UTC stamp>.json and .png.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from example_kit import REPO, Kit, build_kit, write_yaml_atomic
from load_generator import Load
from plotting import new_figure, save_figure
from reporting import log, machine_info, save_results, spread
from request_bodies import make_payload
from servers import Server, daemon_on_v1

SCHEMA = "hotswap-bench/soak/v1"
WARMUP_FRACTION = 0.1  # swaps left out of the growth fit
SWAP_TIMEOUT_S = 60.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Swaps under load; RSS, fds and threads per swap.")
    p.add_argument("--swaps", type=int, default=500, help="v1<->v2 swaps (default 500)")
    p.add_argument("--concurrency", type=int, default=4, help="closed-loop workers (default 4)")
    p.add_argument("--settle", type=float, default=0.3, help="seconds after a swap before sampling")
    p.add_argument("--reload", action="store_true", help="no warm standby: every swap loads anew")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="results dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--short", action="store_true", help="20 swaps, 2 workers; exit 1 on failure")
    args = p.parse_args(argv)
    if args.short:
        args.swaps, args.concurrency = min(args.swaps, 20), 2
    if not 2 <= args.swaps <= 5000:
        p.error("--swaps must be 2..5000")
    if not 1 <= args.concurrency <= 64:
        p.error("--concurrency must be 1..64")
    return args


class Probe:
    """RSS, open fds and threads of one process (psutil)."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.proc = psutil.Process(pid)

    def sample(self) -> dict[str, int]:
        with self.proc.oneshot():
            return {
                "rss_bytes": int(self.proc.memory_info().rss),
                "fds": int(self.proc.num_fds()),
                "threads": int(self.proc.num_threads()),
            }


def docs_for(kit: Kit, reload: bool) -> dict[str, dict[str, Any]]:
    docs = {v: copy.deepcopy(kit.docs[v]) for v in ("1", "2")}
    if reload:
        for doc in docs.values():
            doc["spec"].setdefault("retention", {})["keep_standby"] = False
    return docs


def swap_once(load: Load, yaml_path: Path, doc: dict[str, Any], target: str) -> float | None:
    """Write the desired file for `target`; ms until it answered (None: not within the timeout)."""
    load.expect(target)
    written, _ = write_yaml_atomic(yaml_path, doc)
    deadline = written + SWAP_TIMEOUT_S
    load.end_at = max(load.end_at, deadline + 5)  # the load runs as long as swaps need it
    while load.first_new is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return None if load.first_new is None else round((load.first_new - written) * 1000, 1)


def run_swaps(
    daemon: Server, load: Load, yaml_path: Path, docs: dict[str, dict[str, Any]], args: Any
) -> list[dict[str, Any]]:
    probe = Probe(daemon.pid)
    samples = [{"swap": 0, "version": "1", "t_s": 0.0, "ms": None, **probe.sample()}]
    for i in range(1, args.swaps + 1):
        target = "2" if i % 2 else "1"
        took = swap_once(load, yaml_path, docs[target], target)
        time.sleep(args.settle)
        sample = probe.sample()
        samples.append(
            {"swap": i, "version": target, "t_s": round(time.monotonic() - load.t0, 3),
             "ms": took, **sample}
        )  # fmt: skip
        if i % max(1, args.swaps // 20) == 0 or took is None:
            log(f"swap {i}/{args.swaps} -> v{target}: {took} ms, rss {sample['rss_bytes'] >> 20}"
                f" MiB, fds {sample['fds']}, threads {sample['threads']}")  # fmt: skip
        if took is None or not daemon.alive():
            break
    return samples


def growth(samples: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Least-squares slope of `key` per swap after the warm-up, and the first and last values."""
    rows = [s for s in samples if s["swap"] >= max(1, int(len(samples) * WARMUP_FRACTION))]
    if len(rows) < 3:
        return {"per_swap": None, "fit_from_swap": None, "first": None, "last": None}
    x = np.array([s["swap"] for s in rows], float)
    y = np.array([s[key] for s in rows], float)
    slope = float(np.polyfit(x, y, 1)[0])
    return {
        "per_swap": round(slope, 3),
        "fit_from_swap": int(x[0]),
        "first": samples[0][key],
        "last": samples[-1][key],
        "max": max(s[key] for s in samples),
    }


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    log(f"building the example models in {tmp}")
    kit = build_kit(tmp)
    payload = make_payload(1, args.seed, "json")
    docs = docs_for(kit, args.reload)
    daemon, yaml_path, _ = daemon_on_v1(kit, tmp)
    write_yaml_atomic(yaml_path, docs["1"])
    load = Load(daemon.url, payload, args.concurrency, duration=args.swaps * 10.0 + 60)
    try:
        daemon.start()
        daemon.wait_serving(payload, "1")
        log(
            f"daemon pid {daemon.pid} serving v1; {args.swaps} swaps under {args.concurrency} workers"
        )
        load.start(duration=30.0)
        time.sleep(1.0)  # connections open, first requests answered
        samples = run_swaps(daemon, load, yaml_path, docs, args)
        alive = daemon.alive()
    finally:
        load.end_at = 0.0
        load.join()
        daemon.stop()
    records = load.all_records()
    return {"samples": samples, "alive": alive, "records": records}


def summarise(args: argparse.Namespace, stamp: str, got: dict[str, Any]) -> dict[str, Any]:
    samples, records = got["samples"], got["records"]
    done = [s for s in samples[1:] if s["ms"] is not None]
    failed = sum(1 for r in records if not r.ok)
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "timestamp": stamp,
        "config": {
            "swaps": args.swaps,
            "concurrency": args.concurrency,
            "reload": args.reload,
            "settle_s": args.settle,
            "warmup_fraction": WARMUP_FRACTION,
            "short": args.short,
        },
        "machine": machine_info(),
        "swaps_requested": args.swaps,
        "swaps_observed": len(done),
        "write_to_serving_ms": spread([s["ms"] for s in done]),
        "requests": len(records),
        "failed": failed,
        "growth": {k: growth(samples, k) for k in ("rss_bytes", "fds", "threads")},
        "daemon_alive_at_end": got["alive"],
        "samples": samples,
    }
    result["ok"] = failed == 0 and len(done) == args.swaps and got["alive"]
    return result


def print_report(result: dict[str, Any]) -> None:
    g = result["growth"]
    mode = "reload every swap" if result["config"]["reload"] else "warm standby"
    print(f"\nsoak: {result['swaps_observed']}/{result['swaps_requested']} swaps ({mode}),"
          f" {result['requests']} requests, {result['failed']} failed")  # fmt: skip
    print(f"write -> new version serving (ms): {result['write_to_serving_ms']}")
    rss = g["rss_bytes"]
    if rss["per_swap"] is not None:
        print(f"RSS      {rss['first'] / 2**20:8.1f} -> {rss['last'] / 2**20:8.1f} MiB"
              f"  (max {rss['max'] / 2**20:.1f})  growth {rss['per_swap'] / 1024:+.1f} KiB/swap"
              f" (fit from swap {rss['fit_from_swap']})")  # fmt: skip
        for key in ("fds", "threads"):
            print(f"{key:8} {g[key]['first']:8} -> {g[key]['last']:8}      (max {g[key]['max']})"
                  f"  growth {g[key]['per_swap']:+.4f}/swap")  # fmt: skip
    print(f"ok: {result['ok']}")


def plot(result: dict[str, Any], png: Path) -> None:
    samples = result["samples"]
    x = [s["swap"] for s in samples]
    fig, axes = new_figure(3, (9, 7), [2, 1, 1], sharex=True)
    series = (("rss_bytes", "RSS (MiB)", 2**20), ("fds", "open fds", 1), ("threads", "threads", 1))
    for ax, (key, label, scale) in zip(axes, series, strict=True):
        ax.plot(x, [s[key] / scale for s in samples], lw=1, color="tab:blue")
        g = result["growth"][key]
        if g["per_swap"] is not None:
            ax.set_title(f"{label}: {g['per_swap'] / scale:+.4g} per swap", fontsize=9, loc="left")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("swap")
    mode = "reload every swap" if result["config"]["reload"] else "warm standby"
    fig.suptitle(f"hotswap soak: {result['swaps_observed']} swaps under load ({mode})", fontsize=10)
    save_figure(fig, png)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    tmp = Path(tempfile.mkdtemp(prefix="hotswap-soak-"))
    try:
        result = summarise(args, stamp, run(args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    stem = f"soak-{stamp}{'-reload' if args.reload else ''}"
    save_results(result, args.out, stem, lambda png: plot(result, png), print_report)
    if args.short and not result["ok"]:
        print("FAIL: a request failed or a swap was not observed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
