"""How a bench run reports: its progress log, the figures' summaries, the targets table, the
machine it ran on and the JSON + PNG files it leaves.

Called by every other bench module. Both scenarios summarise latencies, check targets and
write `<out>/<stem>.json` beside `<stem>.png` the same way, so their results read alike and a
change to the format is made once: the summaries (ms, latency_summary, spread, ratio,
count_by) are plain functions of numbers, a target is one TargetRows row (`pass`: True/False,
None where the figure is only reported), and save_results() draws the plot before it writes
the JSON, so that a broken plot is recorded in the JSON instead of losing the figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import numpy as np


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def latency_summary(latencies_s: list[float] | np.ndarray) -> dict[str, Any]:
    a = np.asarray(latencies_s, dtype=np.float64)
    if a.size == 0:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    p50, p99 = np.percentile(a, [50, 99])
    return {
        "count": int(a.size),
        "p50_ms": ms(float(p50)),
        "p99_ms": ms(float(p99)),
        "max_ms": ms(float(a.max())),
        "mean_ms": ms(float(a.mean())),
    }


def spread(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0, "min": None, "median": None, "max": None}
    return {
        "count": len(values),
        "min": round(min(values), 3),
        "median": round(float(np.median(values)), 3),
        "max": round(max(values), 3),
    }


def ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return round(num / den, 4)


def count_by(keys: Iterable[str | None]) -> dict[str, int]:
    """How often each key occurs, in the order first seen (None counts as "?")."""
    counts: dict[str, int] = {}
    for key in keys:
        counts[key or "?"] = counts.get(key or "?", 0) + 1
    return counts


def mib(n: float | None) -> str:
    return "?" if n is None else f"{n / 2**20:.1f}"


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


class TargetRows(list[dict[str, Any]]):
    """The `targets[]` of a result: one row per check, `pass` None where only reported."""

    def add(self, name: str, measured: Any, limit: Any, passed: bool | None, note: str) -> None:
        self.append(
            {"target": name, "measured": measured, "limit": limit, "pass": passed, "note": note}
        )


def print_targets(rows: list[dict[str, Any]], heading: str, width: int) -> None:
    """The targets table that ends a report (`heading`: its first column's title)."""
    print(f"{heading:{width}}{'measured':>12}{'limit':>10}  result")
    for t in rows:
        verdict = {True: "PASS", False: "FAIL", None: "report"}[t["pass"]]
        print(
            f"{t['target']:{width}}{fmt(t['measured']):>12}{fmt(t['limit']):>10}  {verdict:6}  {t['note']}"
        )
    print()


def detail_line(name: str, value: Any) -> None:
    """One indented `name  value` line of a report's per-phase section."""
    print(f"  {name:44}{value}")


def machine_info() -> dict[str, Any]:
    import onnxruntime as ort

    cpu_model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "httpx": httpx.__version__,
    }


def save_results(
    result: dict[str, Any],
    out: Path,
    stem: str,
    draw: Callable[[Path], None],
    report: Callable[[dict[str, Any]], None],
) -> None:
    """Draw `<out>/<stem>.png`, write `<out>/<stem>.json`, print the report and both paths."""
    png = out / f"{stem}.png"
    result["png"] = str(png)
    try:
        draw(png)
    except Exception as e:  # a broken plot must not lose the figures
        result["png"] = None
        result["plot_error"] = repr(e)
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    report(result)
    print(f"results: {json_path}")
    if result["png"]:
        print(f"plot:    {png}")
