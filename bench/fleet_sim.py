"""A fleet simulation: N real daemons, one Mosquitto, one git repository, a ring rollout of a good
version and of a bad one (v3: NaN outputs, refused by the health check).

    python bench/fleet_sim.py [--devices 20] [--resync 30] [--wakes 5] [--source git|worktree]

Measured (bench/README.md, "fleet_sim.py", explains them and extrapolates on paper):
- commit -> every device of the ring serving the version (p50/max per ring), from the rollout's
  own commit line to each device's first report of it active;
- MQTT wake -> the device looking, per device (p50/max), against the polling interval
  (`--resync`): an empty wake on `<prefix>/fleet/sync`, timed to its git source's next fetch
  (or, with `--source worktree`, to the pass count in its status snapshot);
- failed requests under light load (one request per device every `--load-period` seconds): 0;
- the bad version stopped at the first ring, the other rings' files and devices untouched;
- MQTT message sizes and rates (state reports, wakes).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from example_kit import MODEL, REPO, build_kit
from fleet_devices import (
    GIT_ENV,
    LightLoad,
    Tap,
    git,
    make_repo,
    ring_sizes,
    start_broker,
    start_devices,
)
from fleet_report import draw, report, summarize
from reporting import log, machine_info, save_results
from request_bodies import make_payload
from servers import child_env, hotswap_cli

RINGS = ["canary", "early", "all"]


def run_rollout(repo: Path, broker_url: str, version: str, timeout_s: float) -> dict[str, Any]:
    """`hotswap fleet rollout`, its commit lines timed as they are printed."""
    argv = [*hotswap_cli(), "fleet", "rollout", "--repo", str(repo), "--model", MODEL,
            "--version", version, "--broker", broker_url, "--soak", "2s",
            "--timeout", f"{timeout_s:g}s", "--max-offline", "0"]  # fmt: skip
    env = {**child_env(), "HOTSWAP_CONFIG": "", **GIT_ENV}
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    commits: list[dict[str, Any]] = []
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip())
        if ("rollout " in line and ": ring " in line) or ": revert ring " in line:
            ring = line.split("ring ", 1)[1].split(":", 1)[0].strip()
            commits.append({"t": time.monotonic(), "ring": ring, "revert": "revert" in line,
                            "line": line.strip()})  # fmt: skip
    stderr = proc.stderr.read() if proc.stderr else ""
    return {"rc": proc.wait(), "commits": commits, "stdout": lines, "stderr": stderr.splitlines(),
            "started": started, "ended": time.monotonic()}  # fmt: skip


def wake_probes(tap: Tap, devices: list[Any], count: int, timeout_s: float = 10) -> list[float]:
    """Empty wakes on the fleet topic; per device, seconds from the publish to its next pass."""
    latencies: list[float] = []
    for _ in range(count):
        before = {d.name: d.looked() for d in devices}
        sent = tap.publish("hotswap/fleet/sync", "")
        waiting = {d.name: d for d in devices}
        while waiting and time.monotonic() - sent < timeout_s:
            for name, d in list(waiting.items()):
                if d.looked() != before[name]:
                    latencies.append(time.monotonic() - sent)
                    del waiting[name]
            time.sleep(0.005)
        time.sleep(0.5)  # let the passes settle before the next probe
    return latencies


def wait_serving(devices: list[Any], version: str, timeout_s: float) -> None:
    payload = make_payload(1, 0)
    for d in devices:
        d.server.wait_serving(payload, version, timeout=timeout_s)


def scenario(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    kit = build_kit(tmp / "kit")
    broker = start_broker(tmp)
    broker_url = f"mqtt://127.0.0.1:{broker.port}"
    repo = make_repo(tmp / "fleet", kit, RINGS)
    sizes = ring_sizes(args.devices, RINGS)
    devices = start_devices(kit, repo, tmp, sizes, broker_url, args.resync, args.source)
    tap = load = None
    try:
        time.sleep(0.5)
        tap = Tap(broker.port)
        log(f"{len(devices)} devices {sizes}; waiting for v1 everywhere")
        wait_serving(devices, "1", args.start_timeout)
        wakes = wake_probes(tap, devices, args.wakes)
        load = LightLoad(devices, make_payload(1, 0), args.load_period)
        load.start()
        log("rollout of v2 (good)")
        good = run_rollout(repo, broker_url, "2", args.ring_timeout)
        rings_before_bad = {r: (repo / "rings" / r / f"{MODEL}.yaml").read_bytes() for r in RINGS}
        log(f"rollout v2: rc {good['rc']}; rollout of v3 (NaN outputs)")
        bad = run_rollout(repo, broker_url, "3", args.ring_timeout)
        log(f"rollout v3: rc {bad['rc']}")
        time.sleep(2.0)  # the revert reaches the canaries
        load.stop()
        untouched = {r: (repo / "rings" / r / f"{MODEL}.yaml").read_bytes() == rings_before_bad[r]
                     for r in RINGS}  # fmt: skip
        return summarize(
            devices=devices, sizes=sizes, tap=tap.snapshot(), good=good, bad=bad, wakes=wakes,
            load=load, untouched=untouched, resync_s=args.resync, source=args.source, git_log=git(repo, "log", "--format=%s"),
        )  # fmt: skip
    finally:
        if load is not None:
            load.stop()
        if tap is not None:
            tap.close()
        for d in devices:
            d.server.stop()
        broker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--resync", type=float, default=30.0, help="each device's polling interval")
    parser.add_argument("--wakes", type=int, default=5, help="wake probes")
    parser.add_argument(
        "--source", choices=("git", "worktree"), default="git",
        help="git: each device fetches the fleet repository itself (--git);"
        " worktree: each reads its ring's directory of one checkout (--desired)",
    )  # fmt: skip
    parser.add_argument(
        "--load-period", type=float, default=1.0, help="s between requests per device"
    )
    parser.add_argument("--ring-timeout", type=float, default=300.0)
    parser.add_argument("--start-timeout", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="fleet-sim-") as tmp:
        result = scenario(args, Path(tmp))
    result["machine"] = machine_info()
    result["args"] = {k: str(v) for k, v in vars(args).items()}
    save_results(result, args.out, f"fleet_sim-{stamp}", lambda png: draw(result, png), report)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
