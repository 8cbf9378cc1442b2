"""What the probe costs a swap: swap time with and without it, printed.

A new model's first inferences run in a child process before it is loaded into the daemon
(reconciler.ops.probe); that costs a swap the child's start, its load of the model and one
inference, once per deployment. This bench measures it on the example classifier, with no load
(the figure is the probe's own cost, not contention): per round, a fresh daemon serving v1
(`retention.keep_standby: false`, so every swap loads and warms its version), then swaps
v1 -> v2 (a new deployment: probed), v2 -> v1 (probed before: the journal says so, no probe)
and v1 -> v2 again; the same rounds with `hotswap run --no-probe`. Each swap is timed from the
desired YAML's replace to the first response of the new version (polled every 5 ms), and the
probe's own time (`took_s` of the warm's journal record) is reported beside it.

    python bench/probe_cost.py [--rounds 3] [--out bench/results]

Prints a table and writes <out>/probe_cost-<timestamp>.json. Traffic goes to 127.0.0.1 only;
every wait is bounded; the daemons are stopped and the temp dirs removed.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
from daemon_readings import JournalWatch
from example_kit import MODEL, Kit, build_kit, write_yaml_atomic
from request_bodies import make_payload, response_version
from servers import daemon_on_v1

SWAPS = (("2", "new deployment"), ("1", "probed before"), ("2", "probed before"))
SWAP_TIMEOUT_S = 60.0


def _doc(kit: Kit, version: str) -> dict[str, Any]:
    doc = copy.deepcopy(kit.docs[version])
    doc["spec"]["retention"] = {"keep_standby": False}  # every swap loads and warms
    return doc


def _time_swap(url: str, yaml_path: Path, doc: dict[str, Any], version: str) -> float:
    payload = make_payload(1, 0)
    with httpx.Client(base_url=url, timeout=10.0, trust_env=False) as client:
        client.get("/v2/health/live")  # connected before the clock starts
        written, _ = write_yaml_atomic(yaml_path, doc)
        deadline = written + SWAP_TIMEOUT_S
        while time.monotonic() < deadline:
            r = client.post(
                f"/v2/models/{MODEL}/infer", content=payload.body, headers=payload.headers
            )
            if r.status_code == 200 and response_version(r) == version:
                return time.monotonic() - written
            time.sleep(0.005)
    raise RuntimeError(f"v{version} not serving {SWAP_TIMEOUT_S:.0f} s after the write")


def _probe_seconds(state: Path, since: int) -> list[Any]:
    warms = [
        r for r in JournalWatch(state / "journal.db").since(since)
        if r["step"] == "warm" and r["phase"] == "done"
    ]  # fmt: skip
    return [(r["detail"].get("probe") or {}).get("took_s") for r in warms]


def one_round(kit: Kit, probe: bool) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="hotswap-probe-bench-") as tmp:
        daemon, yaml_path, state = daemon_on_v1(kit, Path(tmp))
        write_yaml_atomic(yaml_path, _doc(kit, "1"))
        if not probe:
            daemon.argv.append("--no-probe")
        daemon.start()
        try:
            daemon.wait_serving(make_payload(1, 0), "1")
            rows = []
            for version, kind in SWAPS:
                since = JournalWatch(state / "journal.db").last_seq()
                took = _time_swap(daemon.url, yaml_path, _doc(kit, version), version)
                probe_s = _probe_seconds(state, since)
                rows.append({
                    "to": version, "kind": f"{kind}{'' if probe else ', --no-probe'}",
                    "swap_s": round(took, 4),
                    "probe_s": probe_s[0] if probe_s else None,
                })  # fmt: skip
            return rows
        finally:
            daemon.stop()


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    kinds = [kind for _, kind in SWAPS] + [f"{kind}, --no-probe" for _, kind in SWAPS]
    for kind in dict.fromkeys(kinds):
        swaps = [r["swap_s"] for r in rows if r["kind"] == kind]
        probes = [r["probe_s"] for r in rows if r["kind"] == kind and r["probe_s"] is not None]
        if swaps:
            out[kind] = {
                "swaps": len(swaps),
                "median_swap_ms": round(statistics.median(swaps) * 1000, 1),
                "max_swap_ms": round(max(swaps) * 1000, 1),
                "median_probe_ms": round(statistics.median(probes) * 1000, 1) if probes else None,
            }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hotswap-probe-kit-") as kit_dir:
        kit = build_kit(Path(kit_dir))
        rows = [
            r for _ in range(args.rounds) for probe in (True, False) for r in one_round(kit, probe)
        ]
    summary = summarise(rows)
    print("swap time, example classifier, no load (YAML write -> first answer of the new version)")
    print(f"{'swap':<28}{'swaps':>6}{'median ms':>11}{'max ms':>9}{'probe ms':>10}")
    for kind, s in summary.items():
        probe_ms = "-" if s["median_probe_ms"] is None else f"{s['median_probe_ms']:.0f}"
        print(
            f"{kind:<28}{s['swaps']:>6}{s['median_swap_ms']:>11.0f}{s['max_swap_ms']:>9.0f}{probe_ms:>10}"
        )
    new, bare = summary.get("new deployment"), summary.get("new deployment, --no-probe")
    if new and bare:
        extra = new["median_swap_ms"] - bare["median_swap_ms"]
        print(f"the probe adds {extra:.0f} ms to the swap of a new deployment, none to a later one")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = args.out / f"probe_cost-{stamp}.json"
    path.write_text(
        json.dumps({"rounds": args.rounds, "swaps": rows, "summary": summary}, indent=2)
    )
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
