"""The daemon's memory under load: its RSS sampled every 50 ms, and the figures the RSS target
is judged on.

Called by swap_under_load.run_hotswap, which starts an RssSampler on the daemon's pid before
the load and hands its samples to rss_report() afterwards. The target counts a second version
as its ONNX file size only; a loaded session also holds an activation arena, so
loaded_footprint() measures what a warmed session of v2 really adds, in a fresh interpreter
(not in the daemon, whose RSS it would disturb), and the report gives both.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from reporting import ratio
from servers import daemon_defaults
from swap_windows import Swap, swap_window

RSS_PERIOD_S = 0.05


class RssSampler:
    """Samples a process's resident set size every 50 ms in a thread (psutil, else /proc);
    samples are (monotonic time, bytes)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)
        try:
            import psutil

            self._proc: Any = psutil.Process(pid)
        except Exception:
            self._proc = None

    def rss(self) -> int | None:
        try:
            if self._proc is not None:
                return int(self._proc.memory_info().rss)
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except Exception:
            return None
        return None

    def _run(self) -> None:
        limit = 10_000_000  # count bound; 50 ms apart this is months
        while not self._stop.is_set() and len(self.samples) < limit:
            rss = self.rss()
            if rss is not None:
                self.samples.append((time.monotonic(), rss))
            self._stop.wait(RSS_PERIOD_S)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


_FOOTPRINT_SCRIPT = """
import sys, threading, numpy as np, onnxruntime as ort, psutil
model, threads, workers, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
proc = psutil.Process()
x = np.zeros((batch, 3, 224, 224), np.float32)
so = ort.SessionOptions()
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
ort.InferenceSession(model, so, providers=["CPUExecutionProvider"]).run(None, {"input": x})
before = proc.memory_info().rss  # libraries and one throw-away session already paid for
sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
def run():
    for _ in range(5):
        sess.run(None, {"input": x})
ts = [threading.Thread(target=run) for _ in range(workers)]
[t.start() for t in ts]
[t.join() for t in ts]
print(proc.memory_info().rss - before)
"""


def loaded_footprint(model: Path, threads: int, workers: int, batch: int) -> int | None:
    """RSS a loaded, warmed-up session of `model` adds to a process (weights, ORT arena for
    `workers` concurrent runs), measured in a fresh interpreter; None if it cannot be."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _FOOTPRINT_SCRIPT, str(model), str(threads), str(workers),
             str(batch)],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return int(proc.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError, OSError):
        return None


def rss_figures(
    samples: list[tuple[float, int]], swaps: list[Swap], second_size: int, run_end: float
) -> dict[str, Any]:
    first_write = swaps[0].write if swaps else float("inf")
    before = [v for t, v in samples if t < first_write]
    windows = [swap_window(sw, run_end) for sw in swaps]
    during = [v for t, v in samples if any(lo <= t <= hi for lo, hi in windows)]
    one = max(before) if before else None
    peak_swaps = max(during) if during else None
    budget = None if one is None else one + second_size
    return {
        "one_version_bytes": one,
        "second_version_onnx_bytes": second_size,
        "peak_during_swaps_bytes": peak_swaps,
        "peak_bytes": max((v for _, v in samples), default=None),
        "budget_bytes": budget,
        "peak_over_budget": ratio(peak_swaps, budget),
        "samples": len(samples),
    }


def rss_report(
    samples: list[tuple[float, int]],
    swaps: list[Swap],
    swap_entries: list[dict[str, Any]],
    run_end: float,
    idle_rss: int | None,
    second_model: Path,
    batch: int,
) -> dict[str, Any]:
    """The hotswap result's `rss`: rss_figures() with the idle RSS, v2's loaded footprint and
    the peaks of the first and last swap (`swap_entries`: the result's per-swap figures)."""
    figures = rss_figures(samples, swaps, second_model.stat().st_size, run_end)
    # The target counts a second version as its ONNX file; a loaded session also holds an
    # activation arena. Measured here for context (not used by the target).
    settings = daemon_defaults()
    footprint = loaded_footprint(
        second_model, settings["intra_op_threads"], settings["workers"], batch
    )
    one = figures["one_version_bytes"]
    return {
        "idle_one_version_bytes": idle_rss,
        **figures,
        "second_version_loaded_footprint_bytes": footprint,
        "peak_over_one_version_plus_loaded_footprint": ratio(
            figures["peak_during_swaps_bytes"],
            None if one is None or footprint is None else one + footprint,
        ),
        "peak_in_first_swap_bytes": swap_entries[0].get("peak_rss_bytes") if swaps else None,
        "peak_in_last_swap_bytes": swap_entries[-1].get("peak_rss_bytes") if swaps else None,
    }
