"""Swap model versions under load: what does a hotswap cost the requests being served?

Starts the real daemon (`python -m reconciler.cli run ...`) on a free 127.0.0.1 port with the
example classifier v1, drives closed-loop load at a fixed concurrency (one thread and one
keep-alive `httpx.Client` per worker, the same pre-encoded V2 JSON request each time), and swaps
v1 -> v2 -> v1 ... N times by atomically replacing the desired YAML (temp file + os.replace, as
git and careful editors do). Measured, not asserted (except by --short):

- requests, failed requests, throughput; p50/p99/max latency in steady state and in swap windows
- per swap: YAML write -> first response from the new version; detection (write -> the daemon's
  `reconcile.dispatch` log line for the new version); the longest gap between two successful
  responses
- the daemon's RSS (sampled every 50 ms): with one version loaded, and its peak during swaps

Swap window = [YAML write, first response from the new version + 1 s]. It starts at the write
because everything the daemon does for the update (fetch, verify, build, warm-up and health-check
inferences on the same CPUs) competes with serving from then on; it ends 1 s after the new
version first answers so that the requests still finishing on the old instance, the retirement of
the old version and the first requests on a cold-ish new session are all inside. Requests whose
[start, end] overlaps a window count as "swap window"; the rest, after a short ramp-up, are
"steady state".

Baselines, same model, same request, same load generator, run after the daemon has stopped:
(a) bare ONNX Runtime in-process (the cost of serving at all), and (b) bench/plain_server.py,
a plain single-model V2 server updated the classic way: copy the new model file over the old one
and restart the process. Ratios against the targets are printed and written to
<out>/swap_under_load-<timestamp>.json, with a PNG of latency over time.

    python bench/swap_under_load.py [--concurrency 8] [--duration 60] [--swaps 20] [--batch 1]
                                    [--out bench/results] [--no-baselines] [--seed 0] [--short]

--short: concurrency 4, 6 s, 2 swaps, no baselines; exits 1 if any request failed or a swap
was not observed (this form runs in `make test`). All traffic goes to 127.0.0.1; every loop is
bounded in time and count; the servers are always stopped and temp dirs removed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import itertools
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: runtime.v2 is used to cost the JSON codec
    sys.path.insert(0, str(REPO))
MODEL = "classifier"
HOST = "127.0.0.1"
SCHEMA = "hotswap-bench/swap-under-load/v1"

WARM_FRACTION = 0.2  # the first 20% of the run is steady state before the first swap
RAMP_S = 1.0  # requests starting in the first second (connections, caches) are not steady state
WINDOW_AFTER_S = 1.0  # swap window = [write, first response of the new version + this]
RETRY_PAUSE_S = 0.05  # a worker pauses this long after a failed request (both servers alike)
REQUEST_TIMEOUT_S = 10.0
SWAP_TIMEOUT_S = 30.0  # a swap not serving after this long is recorded as not observed
GRACE_S = 30.0  # the load may run this long past --duration to see the last swap through
RSS_PERIOD_S = 0.05
START_TIMEOUT_S = 90.0
MAX_REQUESTS_PER_WORKER_PER_S = 2000  # a count bound on every load loop
BARE_MAX_S = 15.0
PLAIN_MAX_S = 30.0
PLAIN_MAX_UPDATES = 5
HEADER_LENGTH = "Inference-Header-Content-Length"  # the V2 binary tensor extension
_VERSION_RE = re.compile(rb'"model_version"\s*:\s*"([^"]*)"')

TARGETS = {
    "failed_requests": 0,
    "swap_p99_over_steady_p99": 1.25,
    "hotswap_p50_over_bare_ort_p50": 1.05,
    "peak_rss_over_one_version_plus_second": 1.10,
    "detection_ms_max": 100.0,
}


# -- small helpers ------------------------------------------------------------------------------
def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


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


def sleep_until(deadline: float, stop: threading.Event | None = None) -> None:
    remaining = deadline - time.monotonic()
    if remaining > 0:
        (stop or threading.Event()).wait(remaining)


def parse_iso(ts: str) -> float:
    # structlog writes e.g. 2024-05-01T12:00:00.123456Z; Python 3.10 does not accept the "Z".
    if ts.endswith("Z"):
        ts = ts[:-1] + "+00:00"
    dt = datetime.fromisoformat(ts)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


# -- the example models -------------------------------------------------------------------------
def load_make_models() -> Any:
    spec = importlib.util.spec_from_file_location(
        "make_models", REPO / "examples" / "make_models.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Kit:
    models: dict[str, Path]  # version -> model.onnx
    docs: dict[str, dict[str, Any]]  # version -> ModelDeployment with absolute paths
    public_key: Path  # the publisher's key, installed in the daemon's trust dir


def build_kit(root: Path) -> Kit:
    """Build the example models like tests/conftest.py does; YAMLs get absolute paths."""
    make_models = load_make_models()
    with contextlib.redirect_stdout(io.StringIO()):
        models = make_models.build(root / "registry", None, examples=root / "examples")
    docs: dict[str, dict[str, Any]] = {}
    for yaml_path in sorted((root / "examples").glob(f"{MODEL}.v*.yaml")):
        doc = yaml.safe_load(yaml_path.read_text())
        base = yaml_path.parent
        spec = doc["spec"]
        spec["model"]["source"] = str((base / spec["model"]["source"]).resolve())
        spec["health"]["golden"] = str((base / spec["health"]["golden"]).resolve())
        spec["model"]["manifest"] = str((base / spec["model"]["manifest"]).resolve())
        docs[spec["model"]["version"]] = doc
    assert {"1", "2"} <= set(docs), f"example YAMLs missing: {sorted(docs)}"
    return Kit({v: Path(p) for v, p in models.items()}, docs, root / "keys" / "hotswap.pub")


def write_yaml_atomic(path: Path, doc: dict[str, Any]) -> tuple[float, float]:
    """Replace the desired file in one step; returns (monotonic, wall) time of the replace."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    t_mono, t_wall = time.monotonic(), time.time()
    os.replace(tmp, path)
    return t_mono, t_wall


@dataclass(frozen=True)
class Payload:
    """The one inference request of the whole run, encoded once."""

    protocol: str  # "json" (tensors as JSON lists) or "binary" (V2 binary tensor extension)
    x: np.ndarray
    body: bytes
    headers: dict[str, str]


def make_payload(batch: int, seed: int, protocol: str = "json") -> Payload:
    """JSON: values rounded to 3 decimals so the body is ~1 MB per image instead of ~3 MB of
    17-digit floats. Binary: a small JSON header, then the raw little-endian FP32 bytes, and the
    output asked back as raw bytes. The same array feeds the bare ONNX Runtime baseline."""
    rng = np.random.default_rng(seed)
    values = np.round(rng.standard_normal((batch, 3, 224, 224)), 3)  # float64: short JSON text
    x = values.astype("<f4")
    tensor: dict[str, Any] = {"name": "input", "shape": list(x.shape), "datatype": "FP32"}
    if protocol == "json":
        body = {"inputs": [{**tensor, "data": values.ravel().tolist()}]}
        return Payload(
            protocol,
            x,
            json.dumps(body, separators=(",", ":")).encode(),
            {"content-type": "application/json"},
        )
    raw = x.tobytes()
    header = {
        "inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}],
        "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    return Payload(
        protocol,
        x,
        head + raw,
        {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(head))},
    )


def response_version(r: httpx.Response) -> str | None:
    """model_version of a V2 response: JSON, or a JSON header followed by binary tensors."""
    m = _VERSION_RE.search(r.content[:512])
    if m:
        return m.group(1).decode()
    length = r.headers.get(HEADER_LENGTH)
    try:
        head = r.content[: int(length)] if length and length.isdigit() else r.content
        value = json.loads(head).get("model_version")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def daemon_defaults() -> dict[str, int]:
    """The daemon's default ORT intra-op threads per instance and inference worker count, so
    the baselines run the model exactly as `hotswap run` does without flags."""
    threads, workers = 1, max(1, os.cpu_count() or 1)
    with contextlib.suppress(Exception):
        from reconciler.cli import build_parser

        ns = build_parser().parse_args(["run"])
        threads = int(getattr(ns, "threads", None) or max(1, os.cpu_count() or 1))
    with contextlib.suppress(Exception):
        from runtime.server import default_workers

        workers = int(default_workers())
    return {"intra_op_threads": threads, "workers": workers}


# -- processes under test -----------------------------------------------------------------------
class Server:
    """A child process serving V2 on 127.0.0.1:port, always stopped by stop()."""

    def __init__(self, argv: list[str], port: int, log_path: Path, cwd: Path) -> None:
        self.argv = argv
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("HOTSWAP_CRASHPOINT", None)
        with self.log_path.open("ab") as logf:
            self.proc = subprocess.Popen(self.argv, stdout=logf, stderr=logf, env=env, cwd=self.cwd)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_serving(
        self, payload: Payload, version: str, timeout: float = START_TIMEOUT_S
    ) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S, trust_env=False) as c:
            while time.monotonic() < deadline:
                if not self.alive():
                    raise RuntimeError(f"server exited while starting:\n{self.log_tail()}")
                try:
                    r = c.post(
                        f"/v2/models/{MODEL}/infer", content=payload.body, headers=payload.headers
                    )
                    if r.status_code == 200 and response_version(r) == version:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"v{version} not serving after {timeout:.0f}s:\n{self.log_tail()}")


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


# -- the load generator -------------------------------------------------------------------------
class Rec(NamedTuple):
    start: float  # seconds since the load started
    latency: float  # seconds
    ok: bool
    status: int | None
    version: str | None
    error: str | None


class Load:
    """Closed loop: `concurrency` threads, each with its own keep-alive client, each sending the
    next request as soon as the previous one is answered (after RETRY_PAUSE_S if it failed)."""

    def __init__(self, url: str, payload: Payload, concurrency: int, duration: float) -> None:
        self.url = url
        self.body = payload.body
        self.headers = payload.headers
        self.concurrency = concurrency
        self.path = f"/v2/models/{MODEL}/infer"
        self.records: list[list[Rec]] = [[] for _ in range(concurrency)]
        self.max_per_worker = int(MAX_REQUESTS_PER_WORKER_PER_S * (duration + GRACE_S + 5))
        self.stop_event = threading.Event()
        self.t0 = 0.0
        self.end_at = 0.0
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._expect: str | None = None
        self._expect_since = 0.0
        self.first_new: float | None = None  # monotonic time of the first response of _expect

    def expect(self, version: str) -> None:
        """From now on, note the first successful response that comes from `version`."""
        with self._lock:
            self._expect, self._expect_since, self.first_new = version, time.monotonic(), None

    def _observe(self, version: str | None, t_end: float) -> None:
        if self._expect is None or version != self._expect or self.first_new is not None:
            return
        with self._lock:
            if version == self._expect and self.first_new is None and t_end >= self._expect_since:
                self.first_new = t_end

    def start(self, duration: float) -> None:
        self.t0 = time.monotonic()
        self.end_at = self.t0 + duration
        for i in range(self.concurrency):
            t = threading.Thread(target=self._worker, args=(i,), name=f"load-{i}", daemon=True)
            self._threads.append(t)
            t.start()

    def join(self) -> None:
        deadline = time.monotonic() + REQUEST_TIMEOUT_S + 10
        for t in self._threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))
        self.stop_event.set()
        for t in self._threads:
            t.join(timeout=1)

    def _worker(self, idx: int) -> None:
        recs = self.records[idx]
        client = httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S, trust_env=False)
        try:
            while not self.stop_event.is_set() and len(recs) < self.max_per_worker:
                t = time.monotonic()
                if t >= self.end_at:
                    break
                status: int | None = None
                version: str | None = None
                error: str | None = None
                try:
                    r = client.post(self.path, content=self.body, headers=self.headers)
                    t1 = time.monotonic()
                    status = r.status_code
                    if status == 200:
                        version = response_version(r)
                        if version is None:
                            error = "no model_version"
                    else:
                        error = f"HTTP {status}"
                except httpx.HTTPError as e:
                    t1 = time.monotonic()
                    error = type(e).__name__
                ok = error is None
                recs.append(Rec(t - self.t0, t1 - t, ok, status, version, error))
                if ok:
                    self._observe(version, t1)
                else:
                    self.stop_event.wait(RETRY_PAUSE_S)
        finally:
            client.close()

    def all_records(self) -> list[Rec]:
        return sorted((r for rs in self.records for r in rs), key=lambda r: r.start)


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


# -- analysis -----------------------------------------------------------------------------------
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
    failures: dict[str, int] = {}
    for r in records:
        if not r.ok:
            failures[r.error or "?"] = failures.get(r.error or "?", 0) + 1

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
        "failures_by_kind": failures,
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


def dispatch_times(log_path: Path) -> list[tuple[float, list[str], float | None]]:
    """(wall time, planned steps, planned_in_ms) of every `reconcile.dispatch` log line."""
    out = []
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        if '"reconcile.dispatch"' not in line:
            continue
        try:
            rec = json.loads(line)
            if rec.get("event") == "reconcile.dispatch" and rec.get("model") == MODEL:
                planned = rec.get("planned_in_ms")
                out.append(
                    (
                        parse_iso(rec["timestamp"]),
                        list(rec.get("steps") or []),
                        float(planned) if isinstance(planned, (int, float)) else None,
                    )
                )
        except (ValueError, KeyError, TypeError):
            continue
    return sorted(out)


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


# -- the three measurements ---------------------------------------------------------------------
def run_hotswap(
    kit: Kit, payload: Payload, args: argparse.Namespace, tmp: Path, out: Path, stem: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    desired, state = tmp / "desired", tmp / "state"
    desired.mkdir()
    (state / "trust").mkdir(parents=True)
    shutil.copyfile(kit.public_key, state / "trust" / "publisher.pub")
    yaml_path = desired / f"{MODEL}.yaml"
    write_yaml_atomic(yaml_path, kit.docs["1"])
    log_path = tmp / "daemon.log"
    port = free_port()
    daemon = Server(
        [sys.executable, "-m", "reconciler.cli", "run", "--desired", str(desired),
         "--state-dir", str(state), "--listen", f"{HOST}:{port}", "--resync", "30", "--log-json"],
        port, log_path, tmp,
    )  # fmt: skip
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
    figures = rss_figures(rss, swaps, kit.models["2"].stat().st_size, result["duration_s"])
    # The target counts a second version as its ONNX file; a loaded session also holds an
    # activation arena. Measured here for context (not used by the target).
    settings = daemon_defaults()
    footprint = loaded_footprint(
        kit.models["2"], settings["intra_op_threads"], settings["workers"], args.batch
    )
    one = figures["one_version_bytes"]
    result["rss"] = {
        "idle_one_version_bytes": idle_rss,
        **figures,
        "second_version_loaded_footprint_bytes": footprint,
        "peak_over_one_version_plus_loaded_footprint": ratio(
            figures["peak_during_swaps_bytes"],
            None if one is None or footprint is None else one + footprint,
        ),
        "peak_in_first_swap_bytes": result["swaps"][0].get("peak_rss_bytes") if swaps else None,
        "peak_in_last_swap_bytes": result["swaps"][-1].get("peak_rss_bytes") if swaps else None,
    }
    result["daemon_alive_at_end"] = alive
    kept = out / f"{stem}.daemon.log"  # small; what the daemon did and when
    shutil.copyfile(log_path, kept)
    result["daemon_log"] = str(kept)
    return result, {"records": records, "swaps": swaps, "rss": rss}


def run_bare_ort(
    model: Path, payload: Payload, concurrency: int, duration: float, threads: int
) -> dict[str, Any]:
    """Baseline (a): the same model in-process, the daemon's ORT settings, the same load shape
    (`concurrency` threads in a closed loop), no HTTP and no protocol."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    # The daemon optimises offline (ORT_ENABLE_EXTENDED) and loads the result with optimisation
    # off; optimising at load time gives the same graph.
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    x = payload.x
    for _ in range(5):
        sess.run(out_names, {"input": x})
    lat: list[list[float]] = [[] for _ in range(concurrency)]
    stop_at = time.monotonic() + duration
    cap = int(MAX_REQUESTS_PER_WORKER_PER_S * (duration + 5))

    def worker(i: int) -> None:
        mine = lat[i]
        while len(mine) < cap:
            t = time.monotonic()
            if t >= stop_at:
                break
            sess.run(out_names, {"input": x})
            mine.append(time.monotonic() - t)

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    t0 = time.monotonic()
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=duration + 60)
    elapsed = time.monotonic() - t0
    all_lat = [v for rs in lat for v in rs]
    steady = [v for rs in lat for v in rs[1:]]  # drop each thread's first run
    return {
        "duration_s": round(elapsed, 3),
        "requests": len(all_lat),
        "throughput_rps": round(len(all_lat) / elapsed, 2) if elapsed > 0 else None,
        "latency": latency_summary(steady),
        "protocol_codec_ms": codec_cost(payload, sess),
        "settings": {
            "graph_optimization_level": "ORT_ENABLE_EXTENDED",
            "intra_op_num_threads": threads,
            "inter_op_num_threads": 1,
        },
    }


def codec_cost(payload: Payload, sess: Any) -> dict[str, Any]:
    """What the V2 protocol alone costs per request, one thread, no load: parse the body and
    decode it into tensors with the daemon's codec (runtime.v2), encode and render a response.
    Explains most of any gap between a server and bare ONNX Runtime."""
    out: dict[str, Any] = {"protocol": payload.protocol, "body_bytes": len(payload.body)}
    try:
        from runtime.backends.onnxruntime import OnnxRuntimeSession
        from runtime.v2 import decode_request, encode_response, split_body

        wrapped = OnnxRuntimeSession(sess)
        results = None
        samples = []
        for _ in range(10):
            t = time.monotonic()
            head, binary = split_body(payload.body, payload.headers.get(HEADER_LENGTH))
            req = decode_request(json.loads(head), wrapped.inputs, wrapped.outputs, binary)
            if results is None:
                results = wrapped.infer(req.feeds)
            encoded = encode_response(MODEL, "1", req, results)
            json.dumps(encoded.header, separators=(",", ":"), allow_nan=True).encode()
            samples.append(time.monotonic() - t)
        out.update(latency_summary(samples[1:]))
    except Exception as e:  # the product's codec API moved: report, do not fail the run
        out["error"] = repr(e)
    return out


def run_plain_restart(
    kit: Kit,
    payload: Payload,
    concurrency: int,
    duration: float,
    updates: int,
    tmp: Path,
    settings: dict[str, int],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Baseline (b): plain server, update = copy the new file over the old one + restart."""
    work = tmp / "plain"
    work.mkdir()
    live = work / "model.onnx"
    shutil.copyfile(kit.models["1"], live)
    port = free_port()
    server = Server(
        [sys.executable, str(REPO / "bench" / "plain_server.py"), str(live), "--port", str(port),
         "--threads", str(settings["intra_op_threads"]), "--workers", str(settings["workers"])],
        port, work / "plain.log", work,
    )  # fmt: skip
    downtimes: list[dict[str, float]] = []
    try:
        server.start()
        server.wait_serving(payload, "1")
        log(f"plain server serving v1 on {server.url}; {updates} restarts in {duration:.0f}s")
        load = Load(server.url, payload, concurrency, duration)

        def update(i: int, target: str) -> tuple[float, float]:
            log(f"plain update {i + 1}/{updates}: cp v{target} over the model, restart")
            t_mono, t_wall = time.monotonic(), time.time()
            shutil.copyfile(kit.models[target], live)  # over the old file, like `cp`
            t_stop = time.monotonic()
            server.stop()  # SIGTERM, graceful shutdown, then start again: systemctl restart
            t_start = time.monotonic()
            server.start()
            downtimes.append({"copy_s": t_stop - t_mono, "stop_s": t_start - t_stop})
            return t_mono, t_wall

        swaps = run_with_swaps(load, duration, updates, update)
    finally:
        server.stop()
    records = load.all_records()
    result = analyze(records, swaps)
    for entry, d in zip(result["swaps"], downtimes, strict=False):
        entry["copy_ms"] = ms(d["copy_s"])
        entry["graceful_stop_ms"] = ms(d["stop_s"])
    return result, {"records": records, "swaps": swaps}


# -- targets, report, plot ----------------------------------------------------------------------
def evaluate_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    hot = result["hotswap"]
    bare = (result.get("baselines") or {}).get("bare_ort")
    steady, window = hot["latency"]["steady"], hot["latency"]["swap_windows"]
    rows: list[dict[str, Any]] = []

    def row(name: str, measured: Any, limit: Any, passed: bool | None, note: str) -> None:
        rows.append(
            {"target": name, "measured": measured, "limit": limit, "pass": passed, "note": note}
        )

    row(
        "failed_requests",
        hot["failed"],
        TARGETS["failed_requests"],
        hot["failed"] == 0,
        f"{hot['requests']} requests, {hot['swaps_observed']}/{hot['swaps_requested']} swaps observed",
    )
    r = ratio(window["p99_ms"], steady["p99_ms"])
    row(
        "swap_p99_over_steady_p99",
        r,
        TARGETS["swap_p99_over_steady_p99"],
        None if r is None else r <= TARGETS["swap_p99_over_steady_p99"],
        f"p99 {window['p99_ms']} ms in swap windows vs {steady['p99_ms']} ms steady",
    )
    if bare:
        r = ratio(steady["p50_ms"], bare["latency"]["p50_ms"])
        r99 = ratio(steady["p99_ms"], bare["latency"]["p99_ms"])
        row(
            "hotswap_p50_over_bare_ort_p50",
            r,
            TARGETS["hotswap_p50_over_bare_ort_p50"],
            None if r is None else r <= TARGETS["hotswap_p50_over_bare_ort_p50"],
            f"p50 {steady['p50_ms']} vs {bare['latency']['p50_ms']} ms; p99 ratio {r99}",
        )
    else:
        row(
            "hotswap_p50_over_bare_ort_p50",
            None,
            TARGETS["hotswap_p50_over_bare_ort_p50"],
            None,
            "baselines not run",
        )
    rss = hot["rss"]
    r = rss["peak_over_budget"]
    row(
        "peak_rss_over_one_version_plus_second",
        r,
        TARGETS["peak_rss_over_one_version_plus_second"],
        None if r is None else r <= TARGETS["peak_rss_over_one_version_plus_second"],
        f"peak {mib(rss['peak_during_swaps_bytes'])} vs {mib(rss['one_version_bytes'])} + "
        f"{mib(rss['second_version_onnx_bytes'])} MiB",
    )
    det = hot["detection_ms"]
    row(
        "detection_ms_max",
        det["max"],
        TARGETS["detection_ms_max"],
        None if det["max"] is None else det["max"] <= TARGETS["detection_ms_max"],
        f"median {det['median']} ms over {det['count']} swaps",
    )
    w2s = hot["write_to_serving_ms"]
    row(
        "write_to_serving_ms",
        w2s["median"],
        None,
        None,
        f"reported: min {w2s['min']} / median {w2s['median']} / max {w2s['max']} ms",
    )
    return rows


def mib(n: float | None) -> str:
    return "?" if n is None else f"{n / 2**20:.1f}"


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def print_report(result: dict[str, Any]) -> None:
    hot = result["hotswap"]
    cfg = result["config"]
    print()
    print(
        f"swap under load: concurrency {cfg['concurrency']}, {cfg['duration_s']} s, "
        f"{cfg['swaps']} swaps, batch {cfg['batch']}, {cfg['protocol']} tensors "
        f"({cfg['request_body_bytes']:,} bytes), {result['machine']['cpu_count']} CPUs"
    )
    print(
        f"hotswap: {hot['requests']} requests, {hot['failed']} failed, "
        f"{hot['throughput_rps']} req/s, swaps observed {hot['swaps_observed']}/{hot['swaps_requested']}"
    )
    header = f"{'':34}{'count':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}"
    print(header)

    def line(name: str, s: dict[str, Any]) -> None:
        print(
            f"{name:34}{fmt(s['count']):>8}{fmt(s['p50_ms']):>10}{fmt(s['p99_ms']):>10}{fmt(s['max_ms']):>10}"
        )

    line("hotswap steady", hot["latency"]["steady"])
    line("hotswap swap windows", hot["latency"]["swap_windows"])
    base = result.get("baselines") or {}
    if base.get("bare_ort"):
        line("bare ONNX Runtime", base["bare_ort"]["latency"])
        codec = base["bare_ort"]["protocol_codec_ms"]
        if "count" in codec:
            line(f"  V2 {codec['protocol']} codec alone (1 thread)", codec)
    plain = base.get("plain_restart")
    if plain:
        line("plain server steady", plain["latency"]["steady"])
        line("plain server update windows", plain["latency"]["swap_windows"])
    print()
    w2s, det = hot["write_to_serving_ms"], hot["detection_ms"]
    gap = hot["max_gap_between_responses_ms"]
    print(f"{'per update (min/median/max)':28}{'hotswap':>26}", end="")
    print(f"{'plain restart':>26}" if plain else "")

    def trio(s: dict[str, Any]) -> str:
        return f"{fmt(s['min'])}/{fmt(s['median'])}/{fmt(s['max'])}"

    rows = [
        ("write -> new version (ms)", w2s, plain["write_to_serving_ms"] if plain else None),
        (
            "longest no-response gap (ms)",
            gap,
            plain["max_gap_between_responses_ms"] if plain else None,
        ),
        ("detection (ms)", det, None),
    ]
    for name, h, p in rows:
        print(f"{name:28}{trio(h):>26}", end="")
        print(f"{trio(p) if p else '-':>26}" if plain else "")
    if plain:
        print(
            f"{'failed requests':28}{hot['failed']:>26}{plain['failed']:>26}"
            f"   (plain: {plain['swaps_requested']} updates, {plain['requests']} requests)"
        )
    rss = hot["rss"]
    print(
        f"daemon RSS: one version {mib(rss['one_version_bytes'])} MiB, v2 ONNX "
        f"{mib(rss['second_version_onnx_bytes'])} MiB, peak in swaps "
        f"{mib(rss['peak_during_swaps_bytes'])} MiB, peak {mib(rss['peak_bytes'])} MiB"
    )
    print(
        f"            idle with v1 {mib(rss.get('idle_one_version_bytes'))} MiB; a loaded v2 session "
        f"adds {mib(rss.get('second_version_loaded_footprint_bytes'))} MiB (peak / (one + that) = "
        f"{fmt(rss.get('peak_over_one_version_plus_loaded_footprint'))}); peak in first swap "
        f"{mib(rss.get('peak_in_first_swap_bytes'))} MiB, in last {mib(rss.get('peak_in_last_swap_bytes'))} MiB"
    )
    print()
    print(f"{'target':40}{'measured':>12}{'limit':>10}  result")
    for t in result["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "report"}[t["pass"]]
        print(
            f"{t['target']:40}{fmt(t['measured']):>12}{fmt(t['limit']):>10}  {verdict:6}  {t['note']}"
        )
    print()


def plot(result: dict[str, Any], series: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hot = series["hotswap"]
    plain = series.get("plain_restart")
    rows = 3 if plain else 2
    fig, axes = plt.subplots(
        rows, 1, figsize=(15, 3.6 * rows), gridspec_kw={"height_ratios": [3, 1.4, 3][:rows]}
    )
    cfg = result["config"]
    bare = (result.get("baselines") or {}).get("bare_ort")
    bare_p50 = bare["latency"]["p50_ms"] if bare else None

    def latency_panel(
        ax: Any, data: dict[str, Any], summary: dict[str, Any], label: str, what: str
    ) -> None:
        recs: list[Rec] = data["records"]
        ok = [r for r in recs if r.ok]
        bad = [r for r in recs if not r.ok]
        colors = {"1": "tab:blue", "2": "tab:green"}
        size, alpha = (4, 0.35) if len(ok) > 2000 else (14, 0.6)
        for version in sorted({r.version for r in ok if r.version}):
            mine = [r for r in ok if r.version == version]
            ax.scatter(
                [r.start + r.latency for r in mine],
                [r.latency * 1000 for r in mine],
                s=size, alpha=alpha, color=colors.get(version, "tab:gray"), linewidths=0,
                label=f"response from v{version}",
            )  # fmt: skip
        if ok:
            ends = np.array([r.start + r.latency for r in ok])
            lats = np.array([r.latency * 1000 for r in ok])
            span = float(ends.max() - ends.min())
            width = max(0.25, span / 120, 10 * span / len(ok))  # ~10+ responses per bin
            edges = np.arange(0.0, ends.max() + width, width)
            mids, p99 = [], []
            for lo, hi in itertools.pairwise(edges):
                sel = lats[(ends >= lo) & (ends < hi)]
                if sel.size >= 3:
                    mids.append((lo + hi) / 2)
                    p99.append(np.percentile(sel, 99))
            ax.plot(mids, p99, color="black", lw=1.1, label=f"rolling p99 ({width:.2f} s bins)")
        steady = summary["latency"]["steady"]["p99_ms"]
        if steady:
            ax.axhline(steady, color="gray", ls=":", lw=1, label=f"steady p99 {steady:.0f} ms")
        if bare_p50:
            ax.axhline(
                bare_p50, color="tab:red", ls="-.", lw=1, label=f"bare ORT p50 {bare_p50:.1f} ms"
            )
        top = max([r.latency * 1000 for r in ok], default=1.0)
        if bad:
            ax.scatter(
                [r.start + r.latency for r in bad], [top * 1.15] * len(bad), marker="x", s=22,
                color="red", label=f"failed ({len(bad)})", zorder=5,
            )  # fmt: skip
        for k, (sw, info) in enumerate(zip(data["swaps"], summary["swaps"], strict=True)):
            ax.axvline(sw.write, color="tab:orange", ls="--", lw=1, label=what if k == 0 else None)
            lo, hi = info["window_s"]
            ax.axvspan(
                lo, hi, color="tab:orange", alpha=0.12, label="swap window" if k == 0 else None
            )
        ax.set_yscale("log")
        ax.set_ylabel("latency (ms)")
        ax.set_title(label, fontsize=10, loc="left")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, markerscale=2)

    hs = result["hotswap"]
    latency_panel(
        axes[0], hot, hs,
        f"hotswap daemon: {hs['requests']} requests, {hs['failed']} failed, "
        f"{hs['swaps_observed']} swaps (v1<->v2), concurrency {cfg['concurrency']}, batch {cfg['batch']}",
        "YAML write",
    )  # fmt: skip
    ax = axes[1]
    if hot["rss"]:
        t, v = zip(*hot["rss"], strict=True)
        ax.plot(t, np.array(v) / 2**20, color="tab:purple", lw=1, label="daemon RSS")
    rss = hs["rss"]
    if rss["budget_bytes"]:
        ax.axhline(
            rss["budget_bytes"] * TARGETS["peak_rss_over_one_version_plus_second"] / 2**20,
            color="red", ls=":", lw=1, label="target: 1.10 x (one version + v2 ONNX)",
        )  # fmt: skip
    for sw in hot["swaps"]:
        ax.axvline(sw.write, color="tab:orange", ls="--", lw=1)
    ax.set_ylabel("RSS (MiB)")
    ax.set_xlabel("seconds since load start")
    ax.grid(True, alpha=0.25)
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7)
    axes[1].sharex(axes[0])
    if plain:
        ps = result["baselines"]["plain_restart"]
        latency_panel(
            axes[2], plain, ps,
            f"baseline: plain server, update = cp new model + restart: {ps['requests']} requests, "
            f"{ps['failed']} failed, {ps['swaps_requested']} updates",
            "cp + restart",
        )  # fmt: skip
        axes[2].set_xlabel("seconds since load start")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


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


# -- main ---------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Swap model versions under closed-loop load against the real hotswap daemon "
        "and report failures, latency, swap time, detection time and RSS, with baselines.",
        epilog="Results: <out>/swap_under_load-<timestamp>.json and .png. See bench/README.md.",
    )
    p.add_argument("--concurrency", type=int, default=8, help="closed-loop workers (default 8)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    p.add_argument("--swaps", type=int, default=20, help="v1<->v2 swaps (default 20)")
    p.add_argument("--batch", type=int, default=1, help="images per request, 1-8 (default 1)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="results dir")
    p.add_argument("--no-baselines", action="store_true", help="skip bare ORT and plain server")
    p.add_argument("--seed", type=int, default=0, help="seed of the input tensor (default 0)")
    p.add_argument(
        "--protocol",
        choices=["json", "binary"],
        default="json",
        help="tensors as V2 JSON lists (default) or with the V2 binary tensor extension",
    )
    p.add_argument(
        "--short",
        action="store_true",
        help="concurrency 4, 6 s, 2 swaps, no baselines; exit 1 on any failed request",
    )
    args = p.parse_args(argv)
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
    stem = f"swap_under_load-{stamp}"
    tmp = Path(tempfile.mkdtemp(prefix="hotswap-bench-"))
    try:
        log(f"building the example models in {tmp}")
        kit = build_kit(tmp)
        payload = make_payload(args.batch, args.seed, args.protocol)
        settings = daemon_defaults()
        config = {
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
            "daemon": "python -m reconciler.cli run --resync 30 --log-json",
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
            bare_s = min(args.duration, BARE_MAX_S)
            log(f"baseline (a): bare ONNX Runtime in-process for {bare_s:.0f}s")
            result["baselines"]["bare_ort"] = run_bare_ort(
                kit.models["1"], payload, args.concurrency, bare_s, settings["intra_op_threads"]
            )
            updates = min(args.swaps, PLAIN_MAX_UPDATES)
            plain_s = max(min(args.duration, PLAIN_MAX_S), 5.0 * updates / (1 - WARM_FRACTION))
            log("baseline (b): plain server, updates by file copy + restart")
            plain, plain_series = run_plain_restart(
                kit, payload, args.concurrency, plain_s, updates, tmp, settings
            )
            result["baselines"]["plain_restart"] = plain
            series["plain_restart"] = plain_series
            bare = result["baselines"]["bare_ort"]
            result["ratios"] = {
                "hotswap_over_bare_ort_p50": ratio(
                    hot["latency"]["steady"]["p50_ms"], bare["latency"]["p50_ms"]
                ),
                "hotswap_over_bare_ort_p99": ratio(
                    hot["latency"]["steady"]["p99_ms"], bare["latency"]["p99_ms"]
                ),
                "hotswap_over_plain_server_steady_p50": ratio(
                    hot["latency"]["steady"]["p50_ms"], plain["latency"]["steady"]["p50_ms"]
                ),
                "hotswap_over_plain_write_to_serving_median": ratio(
                    hot["write_to_serving_ms"]["median"], plain["write_to_serving_ms"]["median"]
                ),
                "failed_requests_hotswap_vs_plain": [hot["failed"], plain["failed"]],
            }
        result["targets"] = evaluate_targets(result)
        result["ok"] = hot["failed"] == 0 and hot["swaps_observed"] == hot["swaps_requested"]
        png = out / f"{stem}.png"
        result["png"] = str(png)
        try:
            plot(result, series, png)
        except Exception as e:  # a broken plot must not lose the figures
            result["png"] = None
            result["plot_error"] = repr(e)
        json_path = out / f"{stem}.json"
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        print_report(result)
        print(f"results: {json_path}")
        if result["png"]:
            print(f"plot:    {png}")
        if args.short and not result["ok"]:
            print(
                f"FAIL: {hot['failed']} failed requests, "
                f"{hot['swaps_observed']}/{hot['swaps_requested']} swaps observed",
                file=sys.stderr,
            )
            return 1
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
