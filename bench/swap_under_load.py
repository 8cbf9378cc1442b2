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

--scenario canary: the same daemon and load generator, but each request is a new random image
(binary protocol) and the updates are canary rollouts of the example YAMLs: v5 "flaky" (fails
~16% of images; the error-rate gate must revert it), v6 "slow" (the p99 latency-ratio gate must
revert it), then v2 (both stages pass, promoted). Each waits for the previous outcome, read from
the daemon's journal and GET /v2/models/classifier. Reported per canary: stage times, failed
requests, the candidate's error rate, the daemon's `hotswap_revert_seconds` (mean and bucket)
and the clients' view of the revert; <out>/canary_under_load-<timestamp>.json and .png.
When the last canary is promoted (the full run, not --short), a final phase runs
`hotswap rollback classifier` under the same load: the daemon serves the warm standby (v1)
again by one pointer change. Reported: command -> first v1 answer, journal swap done -> first
v1 answer, the daemon's `hotswap_revert_seconds`, failed requests (must be 0), that no
warm/health-check step ran in between, and the CLI's wall time and exit code.

    python bench/swap_under_load.py --scenario canary [--canaries 5,6,2-canary]
                                    [--concurrency 8] [--duration 60] [--short]
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
    # version -> ModelDeployment with absolute paths; "2-canary": v2 rolled out as a canary
    docs: dict[str, dict[str, Any]]
    public_key: Path  # the publisher's key, installed in the daemon's trust dir
    flaky_threshold: float = 1.0  # v5 fails a request with a row whose input[n,0,0,0] is above


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
        version = spec["model"]["version"]
        docs[f"{version}-canary" if yaml_path.name.endswith("-canary.yaml") else version] = doc
    assert {"1", "2"} <= set(docs), f"example YAMLs missing: {sorted(docs)}"
    return Kit(
        {v: Path(p) for v, p in models.items()},
        docs,
        root / "keys" / "hotswap.pub",
        float(getattr(make_models, "FLAKY_THRESHOLD", 1.0)),
    )


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
    hot: bool | None = None  # RandomBodies: some row's input[n,0,0,0] > v5's threshold


class RandomBodies:
    """Binary V2 bodies of standard-normal images, a different one for every request: one of
    POOL images drawn up front, with the first element of each row drawn afresh per request.
    Whether a request trips v5 (a row with input[n,0,0,0] > threshold, p = 0.159 per row) is
    so a fresh draw each time, and making a body costs one copy of the image (~600 kB), not
    150,528 normal draws competing with the daemon for the CPUs."""

    POOL = 8

    def __init__(self, payload: Payload, seed: int, threshold: float) -> None:
        assert payload.protocol == "binary"
        rng = np.random.default_rng([seed, 1])
        self.batch = int(payload.x.shape[0])
        self.row_bytes = int(np.prod(payload.x.shape[1:])) * 4
        self.threshold = threshold
        self.headers = payload.headers
        self.head = payload.body[: int(payload.headers[HEADER_LENGTH])]
        self.images = [
            memoryview(
                rng.standard_normal(payload.x.shape, dtype=np.float32).astype("<f4").tobytes()
            )
            for _ in range(self.POOL)
        ]

    def draw(self, rng: np.random.Generator) -> tuple[bytes, bool]:
        image = self.images[int(rng.integers(len(self.images)))]
        firsts = rng.standard_normal(self.batch).astype("<f4")
        parts: list[bytes | memoryview] = [self.head]
        for n in range(self.batch):
            at = n * self.row_bytes
            parts += [firsts[n : n + 1].tobytes(), image[at + 4 : at + self.row_bytes]]
        return b"".join(parts), bool((firsts > self.threshold).any())


class Load:
    """Closed loop: `concurrency` threads, each with its own keep-alive client, each sending the
    next request as soon as the previous one is answered (after RETRY_PAUSE_S if it failed).
    With `bodies`, each request is a new random image (the canary scenario); without, the same
    pre-encoded request every time."""

    def __init__(
        self,
        url: str,
        payload: Payload,
        concurrency: int,
        duration: float,
        bodies: RandomBodies | None = None,
        seed: int = 0,
    ) -> None:
        self.url = url
        self.body = payload.body
        self.headers = payload.headers
        self.bodies = bodies
        self.seed = seed
        self.concurrency = concurrency
        self.path = f"/v2/models/{MODEL}/infer"
        self.records: list[list[Rec]] = [[] for _ in range(concurrency)]
        self.max_per_worker = int(MAX_REQUESTS_PER_WORKER_PER_S * (duration + GRACE_S + 5))
        self.stop_event = threading.Event()
        self.t0 = 0.0
        self.t0_wall = 0.0  # time.time() at t0: places the daemon's timestamps on our time line
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
        self.t0, self.t0_wall = time.monotonic(), time.time()
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
        rng = np.random.default_rng([self.seed, 2, idx])
        body, hot = self.body, None
        try:
            while not self.stop_event.is_set() and len(recs) < self.max_per_worker:
                if time.monotonic() >= self.end_at:
                    break
                if self.bodies is not None:
                    body, hot = self.bodies.draw(rng)
                t = time.monotonic()
                status: int | None = None
                version: str | None = None
                error: str | None = None
                try:
                    r = client.post(self.path, content=body, headers=self.headers)
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
                recs.append(Rec(t - self.t0, t1 - t, ok, status, version, error, hot))
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
def daemon_on_v1(kit: Kit, tmp: Path) -> tuple[Server, Path, Path]:
    """The daemon (not started yet) with v1 desired and the kit's publisher trusted; returns it,
    the desired YAML to replace and the state directory."""
    desired, state = tmp / "desired", tmp / "state"
    desired.mkdir()
    (state / "trust").mkdir(parents=True)
    shutil.copyfile(kit.public_key, state / "trust" / "publisher.pub")
    yaml_path = desired / f"{MODEL}.yaml"
    write_yaml_atomic(yaml_path, kit.docs["1"])
    port = free_port()
    daemon = Server(
        [sys.executable, "-m", "reconciler.cli", "run", "--desired", str(desired),
         "--state-dir", str(state), "--listen", f"{HOST}:{port}", "--resync", "30", "--log-json"],
        port, tmp / "daemon.log", tmp,
    )  # fmt: skip
    return daemon, yaml_path, state


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


# -- the canary scenario ------------------------------------------------------------------------
CANARY_SCHEMA = "hotswap-bench/canary-under-load/v1"
# The kit's canary YAMLs (examples/make_models.py), in the order they run, and what the daemon
# must do with each: v5 fails the error-rate gate, v6 the p99 latency-ratio gate, v2 passes.
CANARIES = {"5": "revert", "6": "revert", "2-canary": "promote"}
CANARY_NAMES = {"5": "v5 flaky", "6": "v6 slow", "2-canary": "v2 (good)"}
CANARY_WARM_S = 3.0  # at least this much steady v1 load before the first canary
CANARY_GAP_S = 3.0  # and between one canary's outcome and the next YAML write
CANARY_SLACK_S = 45.0  # outcome deadline = write + the stages' total time + this
CANARY_TAIL_S = 2.0  # load after the last outcome
POLL_S = 0.1  # journal / model metadata polling while a canary runs
VERSION_COLORS = {"1": "tab:blue", "2": "tab:green", "5": "magenta", "6": "tab:orange"}
# The warm-standby revert after a promotion: `hotswap rollback` under the same load.
ROLLBACK_WAIT_S = 30.0  # the CLI's --wait (it follows the journal until v1 serves)
ROLLBACK_TIMEOUT_S = ROLLBACK_WAIT_S + 15.0  # the subprocess is killed after this long
ROLLBACK_BUDGET_S = CANARY_GAP_S + ROLLBACK_TIMEOUT_S + 10.0  # extra load time it may take
ROLLBACK_TARGET_MS = 10.0  # hotswap_revert_seconds mean: decision -> first request on v1
# Steps that load or judge a version: none may run between the override and the swap, or the
# rollback was not the pointer change to the standby it should be.
LOADING_STEPS = {"fetch", "verify", "build", "warm", "health-check", "rollout"}


class JournalWatch:
    """The daemon's journal (state/journal.db), read-only through reconciler.journal, as dicts
    with `t_s` = seconds since the load started (the journal's UTC time on our time line)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.t0_wall = 0.0

    def since(self, seq: int) -> list[dict[str, Any]]:
        from reconciler.journal import Journal

        try:
            journal = Journal(self.path, readonly=True)
        except Exception:  # not written yet: nothing to read
            return []
        out = []
        try:
            for rec in journal.records(MODEL):
                if rec.seq > seq:
                    out.append(
                        {
                            "seq": rec.seq,
                            "t_s": round(parse_iso(rec.time) - self.t0_wall, 4),
                            "time": rec.time,
                            "step": rec.step,
                            "phase": rec.phase,
                            "from_version": rec.from_version,
                            "to_version": rec.to_version,
                            "detail": rec.details,
                        }
                    )
        except Exception as e:  # sqlite busy or a schema change: read again at the next poll
            log(f"journal read failed ({e!r}); retrying")
        finally:
            journal.close()
        return out

    def last_seq(self) -> int:
        records = self.since(0)
        return records[-1]["seq"] if records else 0


_METRIC_LINE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_METRIC_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')

Samples = list[tuple[str, dict[str, str], float]]


def scrape(client: httpx.Client) -> Samples:
    """GET /metrics as (name, labels, value) samples; empty if the daemon does not answer."""
    try:
        text = client.get("/metrics").text
    except httpx.HTTPError:
        return []
    samples: Samples = []
    for line in text.splitlines():
        m = _METRIC_LINE.match(line)
        if m is None or line.startswith("#"):
            continue
        with contextlib.suppress(ValueError):
            labels = dict(_METRIC_LABEL.findall(m.group(2) or ""))
            samples.append((m.group(1), labels, float(m.group(3))))
    return samples


def metric_sum(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        v for n, lab, v in samples if n == name and all(lab.get(k) == w for k, w in labels.items())
    )


def revert_histogram(before: Samples, after: Samples) -> dict[str, Any]:
    """The reverts `hotswap_revert_seconds` observed between two scrapes: their count, mean
    (sum/count) and the histogram bucket they fall in (le bounds, in seconds)."""
    name = "hotswap_revert_seconds"
    present = any(n.startswith(name) for n, _, _ in after)
    count = metric_sum(after, f"{name}_count", model=MODEL) - metric_sum(
        before, f"{name}_count", model=MODEL
    )
    total = metric_sum(after, f"{name}_sum", model=MODEL) - metric_sum(
        before, f"{name}_sum", model=MODEL
    )
    les = sorted({float(lab["le"]) for n, lab, _ in after if n == f"{name}_bucket" and "le" in lab})
    cumulative = [
        (
            le,
            sum(
                v
                for n, lab, v in after
                if n == f"{name}_bucket" and lab.get("model") == MODEL and float(lab["le"]) == le
            )
            - sum(
                v
                for n, lab, v in before
                if n == f"{name}_bucket" and lab.get("model") == MODEL and float(lab["le"]) == le
            ),
        )
        for le in les
    ]
    out: dict[str, Any] = {
        "metric_present": present,
        "count": int(count),
        "mean_ms": ms(total / count) if count > 0 else None,
        "bucket_s": None,
    }
    if count > 0:
        # the bucket of the fastest and of the slowest revert: (previous le, first le with 1 /
        # with all of them]; the same bucket when there is one revert
        lo_i = next((i for i, (_, c) in enumerate(cumulative) if c >= 1), None)
        hi_i = next((i for i, (_, c) in enumerate(cumulative) if c >= count), None)
        if lo_i is not None and hi_i is not None:
            lo = cumulative[lo_i - 1][0] if lo_i > 0 else 0.0
            out["bucket_s"] = [lo, cumulative[hi_i][0]]
    return out


def requests_by_version(before: Samples, after: Samples) -> dict[str, dict[str, int]]:
    """Server-side `hotswap_inference_requests_total` between two scrapes, by version and code."""
    name = "hotswap_inference_requests_total"
    out: dict[str, dict[str, int]] = {}
    keys = {
        (lab.get("version", "?"), lab.get("code", "?"))
        for n, lab, _ in after
        if n == name and lab.get("model") == MODEL
    }
    for version, code in sorted(keys):
        d = metric_sum(after, name, model=MODEL, version=version, code=code) - metric_sum(
            before, name, model=MODEL, version=version, code=code
        )
        if d:
            out.setdefault(version, {})[code] = int(d)
    return out


def served_version(client: httpx.Client) -> str | None:
    """The active version, from GET /v2/models/{model} ("versions"): during a canary stage it
    is still the old one; after a promotion it is the new one."""
    try:
        r = client.get(f"/v2/models/{MODEL}")
        versions = r.json().get("versions") if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return str(versions[0]) if isinstance(versions, list) and versions else None


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
        revert = next((r for r in records if r["step"] == "revert" and r["phase"] == "done"), None)
        if revert is not None:
            return "reverted", revert["t_s"], records
        if served_version(client) == target:
            swap = next(
                (
                    r
                    for r in records
                    if r["step"] == "swap" and r["phase"] == "done" and r["to_version"] == target
                ),
                None,
            )
            return "promoted", swap["t_s"] if swap else time.monotonic() - t0, records
        failure = next((r for r in records if r["phase"] == "failed"), None)
        if failure is not None:  # a revert follows at once when a candidate was loaded
            failed_since = failed_since or time.monotonic()
            if time.monotonic() - failed_since > 5.0:
                return f"failed:{failure['step']}", failure["t_s"], records
        time.sleep(POLL_S)
    records += watch.since(records[-1]["seq"] if records else seq0)
    return "timeout", None, records


@dataclass
class CanaryPhase:
    key: str  # kit doc key: "5", "6", "2-canary"
    target: str  # the model version it deploys
    expect: str  # "revert" | "promote"
    steps: list[dict[str, Any]]  # the YAML's rollout steps
    write: float  # seconds since the load started
    write_wall: float
    outcome: str = "pending"
    outcome_s: float | None = None
    records: list[dict[str, Any]] | None = None
    before: Samples | None = None
    after: Samples | None = None


def stage_spans(
    records: list[dict[str, Any]], end: float, steps: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each rollout stage from its journal records: begin, end (done / failed), the daemon's
    verdict and figures; `steps` (the YAML's) give the weights."""
    stages: list[dict[str, Any]] = []
    for r in records:
        if r["step"] != "rollout":
            continue
        if r["phase"] == "begin":
            i = len(stages)
            stages.append(
                {
                    "stage": i + 1,
                    "weight": steps[i].get("weight") if i < len(steps) else None,
                    "begin_s": r["t_s"],
                    "end_s": None,
                    "result": "running",
                }
            )
        elif stages and stages[-1]["end_s"] is None:
            d = r["detail"]
            stages[-1].update(
                end_s=r["t_s"],
                result=r["phase"],  # done | failed
                verdict=d.get("verdict") or d.get("message"),
                reason=d.get("reason"),
                daemon_figures=d.get("figures"),
            )
    for st in stages:
        if st["end_s"] is None:
            st["end_s"] = end
    return stages


def canary_phase_figures(
    phase: CanaryPhase, records: list[Rec], window_end: float
) -> dict[str, Any]:
    """What the clients saw from one canary's YAML write to `window_end`, beside what the
    daemon journaled and counted."""
    jr = phase.records or []
    sel = [r for r in records if phase.write <= r.start < window_end]
    ok = [r for r in sel if r.ok]
    bad = [r for r in sel if not r.ok]
    by_version: dict[str, int] = {}
    for r in ok:
        by_version[r.version or "?"] = by_version.get(r.version or "?", 0) + 1
    failures: dict[str, int] = {}
    for r in bad:
        failures[r.error or "?"] = failures.get(r.error or "?", 0) + 1
    # A failed request has no model_version; v1 never fails, so a 500 is the candidate's.
    to_candidate = [r for r in sel if (r.ok and r.version == phase.target) or r.status == 500]
    candidate_ids = {id(r) for r in to_candidate}
    end = lambda r: r.start + r.latency  # noqa: E731

    def first(step: str, ph: str) -> float | None:
        return next((r["t_s"] for r in jr if r["step"] == step and r["phase"] == ph), None)

    stages = stage_spans(jr, window_end, phase.steps)
    gate = next((r for r in jr if r["step"] == "rollout" and r["phase"] == "failed"), None)
    decided = gate["t_s"] if gate else None  # traffic goes back before this record is written
    fig: dict[str, Any] = {
        "canary": phase.key,
        "name": CANARY_NAMES.get(phase.key, phase.key),
        "target_version": phase.target,
        "expected": phase.expect,
        "outcome": phase.outcome,
        "as_expected": phase.outcome == {"revert": "reverted", "promote": "promoted"}[phase.expect],
        "write_s": round(phase.write, 4),
        "outcome_s": phase.outcome_s,
        "window_s": [round(phase.write, 4), round(window_end, 4)],
        "journal": {
            "health_check_done_s": first("health-check", "done"),
            "first_stage_begin_s": first("rollout", "begin"),
            "gate_failed_s": decided,
            "gate_failure": None
            if gate is None
            else {
                "reason": gate["detail"].get("reason"),
                "message": gate["detail"].get("message"),
                "stage": gate["detail"].get("stage"),
                "traffic_back_ms": gate["detail"].get("traffic_back_ms"),
                "figures": gate["detail"].get("figures"),
            },
            "revert_done_s": first("revert", "done"),
            "swap_done_s": next(
                (
                    r["t_s"]
                    for r in jr
                    if r["step"] == "swap"
                    and r["phase"] == "done"
                    and r["to_version"] == phase.target
                ),
                None,
            ),
            "records": len(jr),
        },
        "stages": stages,
        "requests": len(sel),
        "failed": len(bad),
        "failures_by_kind": failures,
        "failed_with_hot_input": sum(1 for r in bad if r.hot),
        "hot_requests": sum(1 for r in sel if r.hot),
        "answered_by_version": by_version,
        "to_candidate": len(to_candidate),
        "candidate_error_rate": round(
            sum(1 for r in to_candidate if not r.ok) / len(to_candidate), 4
        )
        if to_candidate
        else None,
        "server_requests_by_version": requests_by_version(phase.before or [], phase.after or []),
        "revert_seconds": revert_histogram(phase.before or [], phase.after or []),
    }
    w = fig["journal"]
    w["write_to_first_stage_ms"] = ms(
        None if w["first_stage_begin_s"] is None else w["first_stage_begin_s"] - phase.write
    )
    if stages and decided is not None:
        w["stage_begin_to_gate_failed_ms"] = ms(decided - stages[-1]["begin_s"])
    # Latency per version inside each stage (responses that started and ended in it): the
    # clients' view of what the p99 gate judges (the daemon times the inference alone).
    for st in stages:
        inside = [r for r in ok if r.start >= st["begin_s"] and end(r) <= st["end_s"]]
        st["client_latency"] = {
            v: latency_summary([r.latency for r in inside if r.version == v])
            for v in sorted({r.version or "?" for r in inside})
        }
        started = [r for r in sel if st["begin_s"] <= r.start < st["end_s"]]
        st["client_share_to_candidate"] = (
            round(sum(1 for r in started if id(r) in candidate_ids) / len(started), 4)
            if started
            else None
        )
        lat = st["client_latency"]
        st["client_p99_ratio"] = ratio(
            (lat.get(phase.target) or {}).get("p99_ms"), (lat.get("1") or {}).get("p99_ms")
        )
    # Client-side revert figures (seconds since the load started; durations in ms).
    client: dict[str, Any] = {}
    if bad:
        first_fail = min(end(r) for r in bad)
        client["first_failure_s"] = round(first_fail, 4)
        client["last_failure_s"] = round(max(end(r) for r in bad), 4)
        later_v1 = [end(r) for r in ok if r.version == "1" and r.start >= first_fail]
        client["first_failure_to_next_v1_200_ms"] = ms(
            min(later_v1) - first_fail if later_v1 else None
        )
        last_cand = max(end(r) for r in to_candidate)
        client["last_candidate_answer_s"] = round(last_cand, 4)
        client["first_failure_to_last_candidate_answer_ms"] = ms(last_cand - first_fail)
    if decided is not None:
        after_v1 = [end(r) for r in ok if r.version == "1" and r.start >= decided]
        client["gate_failed_to_next_v1_200_ms"] = ms(min(after_v1) - decided if after_v1 else None)
        client["to_candidate_started_after_gate_failed"] = sum(
            1 for r in to_candidate if r.start > decided
        )
        if to_candidate:
            client["gate_failed_to_last_candidate_answer_ms"] = ms(
                max(end(r) for r in to_candidate) - decided
            )
    fig["client_revert"] = client
    return fig


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


def hotswap_cli() -> list[str]:
    """The `hotswap` console script beside this interpreter (the venv's), else the module."""
    script = Path(sys.executable).parent / "hotswap"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "reconciler.cli"]


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
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("HOTSWAP_CRASHPOINT", None)
    log(f"rollback: hotswap rollback {MODEL} --reason bench (v{frm} -> warm standby v{rb.to})")
    t_start = time.monotonic()
    rb.start, rb.start_wall = t_start - t0, time.time()
    try:
        proc = subprocess.run(
            rb.argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=ROLLBACK_TIMEOUT_S
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
        if any(r["step"] == "swap" and r["phase"] == "done" and r["to_version"] == rb.to
               for r in records) or time.monotonic() >= deadline:  # fmt: skip
            break
        time.sleep(POLL_S)
    swap_done = next(
        (r["t_s"] for r in records
         if r["step"] == "swap" and r["phase"] == "done" and r["to_version"] == rb.to),
        None,
    )  # fmt: skip
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
    end = lambda r: r.start + r.latency  # noqa: E731
    jr = rb.records or []
    sel = [r for r in records if end(r) >= rb.start]
    ok = [r for r in sel if r.ok]
    bad = [r for r in sel if not r.ok]
    by_version: dict[str, int] = {}
    for r in ok:
        by_version[r.version or "?"] = by_version.get(r.version or "?", 0) + 1
    failures: dict[str, int] = {}
    for r in bad:
        failures[r.error or "?"] = failures.get(r.error or "?", 0) + 1
    override = next(
        (r for r in jr if r["step"] == "override" and r["phase"] == "done"
         and (r["detail"] or {}).get("action") == "set"),
        None,
    )  # fmt: skip
    swap_begin = next(
        (r for r in jr if r["step"] == "swap" and r["phase"] == "begin"
         and r["to_version"] == rb.to),
        None,
    )  # fmt: skip
    swap_done = next(
        (r for r in jr if r["step"] == "swap" and r["phase"] == "done"
         and r["to_version"] == rb.to),
        None,
    )  # fmt: skip
    failed = [r for r in jr if r["phase"] == "failed"]
    between: list[dict[str, Any]] = []
    if override is not None:
        stop = swap_done["seq"] if swap_done else float("inf")
        between = [r for r in jr if override["seq"] < r["seq"] < stop]
    loading = [f"{r['step']} {r['phase']}" for r in between if r["step"] in LOADING_STEPS]
    first_v1 = min((end(r) for r in ok if r.version == rb.to), default=None)
    last_old = max((end(r) for r in ok if r.version == rb.frm), default=None)
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
        "failures_by_kind": failures,
        "answered_by_version": by_version,
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
    run_end = float(max((r.start + r.latency for r in records), default=0.0))
    figures = []
    for i, phase in enumerate(phases):
        window_end = phases[i + 1].write if i + 1 < len(phases) else run_end + 1e-9
        if i + 1 == len(phases) and rollback is not None:
            window_end = rollback.start  # the promoted version's window ends at the command
        figures.append(canary_phase_figures(phase, records, window_end))
    first_write = phases[0].write if phases else run_end
    steady = ok & np.fromiter(
        (r.start >= RAMP_S and r.start + r.latency < first_write for r in records), bool, n
    )
    failures: dict[str, int] = {}
    for r in records:
        if not r.ok:
            failures[r.error or "?"] = failures.get(r.error or "?", 0) + 1
    result: dict[str, Any] = {
        "requests": n,
        "failed": int((~ok).sum()),
        "failures_by_kind": failures,
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
    """One row per check: each canary's outcome and failed requests, the revert times."""
    rows: list[dict[str, Any]] = []

    def row(name: str, measured: Any, limit: Any, passed: bool | None, note: str) -> None:
        rows.append(
            {"target": name, "measured": measured, "limit": limit, "pass": passed, "note": note}
        )

    for c in result["canary"]["canaries"]:
        who = c["name"].split()[0]
        gate = c["journal"]["gate_failure"]
        row(
            f"{who}_outcome",
            c["outcome"],
            {"revert": "reverted", "promote": "promoted"}[c["expected"]],
            c["as_expected"],
            gate["message"] if gate else f"{len(c['stages'])} stages journaled",
        )
        if c["target_version"] == "5":
            row(
                f"{who}_failed_requests",
                c["failed"],
                None,
                None,
                f"reported: {c['to_candidate']} requests to the candidate, error rate "
                f"{c['candidate_error_rate']}; {c['failed_with_hot_input']} of the failures had "
                "input[0,0,0,0] > 1",
            )
            rev = c["revert_seconds"]
            row(
                f"{who}_revert_ms_daemon_mean",
                rev["mean_ms"],
                None,
                None,
                f"hotswap_revert_seconds: {rev['count']} observed, bucket {bucket(rev)}",
            )
            cl = c["client_revert"]
            row(
                f"{who}_first_failure_to_last_candidate_answer_ms",
                cl.get("first_failure_to_last_candidate_answer_ms"),
                None,
                None,
                f"next v1 200 after the first failure: "
                f"{cl.get('first_failure_to_next_v1_200_ms')} ms",
            )
        else:
            row(
                f"{who}_failed_requests",
                c["failed"],
                0,
                c["failed"] == 0,
                f"{c['requests']} requests, {c['to_candidate']} to the candidate",
            )
    rb = result["canary"].get("rollback")
    if rb is not None:
        cl, rev, j = rb["client"], rb["revert_seconds"], rb["journal"]
        row(
            "rollback_served_version",
            rb["served_after"],
            rb["to_version"],
            rb["served_after"] == rb["to_version"],
            f"hotswap rollback: v{rb['from_version']} -> warm standby v{rb['to_version']} "
            "(GET /v2/models 1 s after the swap)",
        )
        row(
            "rollback_failed_requests",
            rb["failed"],
            0,
            rb["failed"] == 0,
            f"{rb['requests']} requests from the command on; answered {rb['answered_by_version']}",
        )
        row(
            "rollback_loading_steps_between",
            len(j["loading_steps_between"]),
            0,
            rb["pointer_change"],
            "journal between override done and swap done: "
            + (", ".join(j["steps_between_override_and_swap_done"]) or "nothing")
            + ("" if j["swap_done_s"] is not None else " (no swap done record)"),
        )
        row(
            "rollback_revert_ms_daemon_mean",
            rev["mean_ms"],
            ROLLBACK_TARGET_MS,
            None if rev["mean_ms"] is None else rev["mean_ms"] <= ROLLBACK_TARGET_MS,
            f"hotswap_revert_seconds: {rev['count']} observed, bucket {bucket(rev)} (target)",
        )
        row(
            "rollback_command_to_first_v1_200_ms",
            cl["command_to_first_v1_200_ms"],
            None,
            None,
            f"journal swap done -> first v1 200: {fmt(cl['swap_done_to_first_v1_200_ms'])} ms",
        )
        row(
            "rollback_cli_exit_code",
            rb["cli"]["exit_code"],
            0,
            rb["cli"]["exit_code"] == 0,
            f"CLI wall time {fmt(rb['cli']['wall_ms'])} ms",
        )
    return rows


def bucket(rev: dict[str, Any]) -> str:
    b = rev.get("bucket_s")
    return "-" if not b else f"({b[0]:g}, {b[1]:g}] s"


def print_canary_report(result: dict[str, Any]) -> None:
    cfg, can = result["config"], result["canary"]
    print()
    print(
        f"canary under load: concurrency {cfg['concurrency']}, batch {cfg['batch']}, "
        f"{cfg['protocol']} tensors, random standard-normal images, "
        f"{result['machine']['cpu_count']} CPUs"
    )
    print(
        f"{can['requests']} requests ({can['hot_requests']} with input[0,0,0,0] > 1), "
        f"{can['failed']} failed {can['failures_by_kind'] or ''}, {can['throughput_rps']} req/s; "
        f"v1 steady p50/p99 {fmt(can['latency']['steady_v1']['p50_ms'])}/"
        f"{fmt(can['latency']['steady_v1']['p99_ms'])} ms; serving at the end: "
        f"v{can['served_at_end']}"
    )
    for c in can["canaries"]:
        j, cl = c["journal"], c["client_revert"]
        verdict = "as expected" if c["as_expected"] else "NOT AS EXPECTED"
        print()
        print(
            f"{c['name']}: {c['outcome']} ({verdict}; expected {c['expected']}), "
            f"YAML written at {c['write_s']:.2f} s"
        )

        def line(name: str, value: Any) -> None:
            print(f"  {name:44}{value}")

        line("write -> first stage begins (ms)", fmt(j["write_to_first_stage_ms"]))
        for st in c["stages"]:
            lat = st["client_latency"]
            p99 = ", ".join(f"v{v} {fmt(s['p99_ms'])}" for v, s in lat.items())
            daemon = st.get("daemon_figures") or {}
            cand = daemon.get("candidate") or {}
            act = daemon.get("active") or {}
            line(
                f"stage {st.get('stage') or '?'} ({fmt(st.get('weight'))}%) "
                f"{st['begin_s']:.2f}-{st['end_s']:.2f} s: {st['result']}",
                f"client p99 ms {p99}; candidate share {fmt(st['client_share_to_candidate'])}",
            )
            if daemon:
                line(
                    "    daemon's figures",
                    f"candidate {cand.get('requests')} req / {cand.get('errors')} err / p99 "
                    f"{fmt(cand.get('p99_ms'))} ms; active {act.get('requests')} req / p99 "
                    f"{fmt(act.get('p99_ms'))} ms",
                )
            if st.get("verdict"):
                line("    verdict", st["verdict"])
        line(
            "requests / failed / to the candidate",
            f"{c['requests']} / {c['failed']} / {c['to_candidate']} "
            f"(candidate error rate {fmt(c['candidate_error_rate'])})",
        )
        line("answered by version", c["answered_by_version"])
        if j["gate_failed_s"] is not None:
            rev = c["revert_seconds"]
            line(
                "revert, daemon: hotswap_revert_seconds",
                f"mean {fmt(rev['mean_ms'])} ms over {rev['count']}, bucket {bucket(rev)}"
                + ("" if rev["metric_present"] else " (metric not exposed)"),
            )
            line(
                "revert, journal: gate failed -> revert done",
                fmt(ms(j["revert_done_s"] - j["gate_failed_s"]) if j["revert_done_s"] else None)
                + " ms",
            )
            line(
                "revert, client: gate failed -> next v1 200",
                f"{fmt(cl.get('gate_failed_to_next_v1_200_ms'))} ms (journal time of the "
                f"failed record); last candidate answer at "
                f"{fmt(cl.get('gate_failed_to_last_candidate_answer_ms'))} ms, "
                f"{cl.get('to_candidate_started_after_gate_failed')} requests to it started after",
            )
        if "first_failure_s" in cl:
            line(
                "client: first failure -> next v1 200",
                f"{fmt(cl['first_failure_to_next_v1_200_ms'])} ms; -> last candidate answer "
                f"{fmt(cl['first_failure_to_last_candidate_answer_ms'])} ms",
            )
    rb = can.get("rollback")
    if rb is not None:
        j, cl, rev, cli = rb["journal"], rb["client"], rb["revert_seconds"], rb["cli"]
        print()
        print(
            f"rollback to the warm standby: v{rb['from_version']} -> v{rb['to_version']}, "
            f"`hotswap rollback {MODEL} --reason bench` run at {rb['command_s']:.2f} s; "
            f"serving after: v{rb['served_after']}"
        )

        def rline(name: str, value: Any) -> None:
            print(f"  {name:44}{value}")

        rline("CLI: exit code / wall time", f"{cli['exit_code']} / {fmt(cli['wall_ms'])} ms")
        rline(
            "command -> override / swap done (journal)",
            f"{fmt(cl['command_to_override_ms'])} / {fmt(cl['command_to_swap_done_ms'])} ms "
            f"(override -> swap done {fmt(cl['override_to_swap_done_ms'])} ms)",
        )
        rline(
            "journal: override -> swap done",
            ", ".join(j["steps_between_override_and_swap_done"]) or "nothing in between",
        )
        rline(
            "client: command -> first v1 200",
            f"{fmt(cl['command_to_first_v1_200_ms'])} ms",
        )
        rline(
            "client: journal swap done -> first v1 200",
            f"{fmt(cl['swap_done_to_first_v1_200_ms'])} ms; last v{rb['from_version']} answer "
            f"{fmt(cl['swap_done_to_last_old_version_answer_ms'])} ms, "
            f"{cl['old_version_started_after_swap_done']} started after",
        )
        rline(
            "daemon: hotswap_revert_seconds",
            f"mean {fmt(rev['mean_ms'])} ms over {rev['count']}, bucket {bucket(rev)}"
            + ("" if rev["metric_present"] else " (metric not exposed)"),
        )
        rline(
            "requests / failed",
            f"{rb['requests']} / {rb['failed']} {rb['failures_by_kind'] or ''}; "
            f"answered {rb['answered_by_version']}",
        )
    print()
    print(f"{'check':48}{'measured':>12}{'limit':>10}  result")
    for t in result["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "report"}[t["pass"]]
        print(
            f"{t['target']:48}{fmt(t['measured']):>12}{fmt(t['limit']):>10}  {verdict:6}  {t['note']}"
        )
    print()


def plot_canary(result: dict[str, Any], series: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs: list[Rec] = series["records"]
    can = result["canary"]
    fig, axes = plt.subplots(
        2, 1, figsize=(15, 8), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]}
    )
    ax = axes[0]
    ok = [r for r in recs if r.ok]
    bad = [r for r in recs if not r.ok]
    size, alpha = (4, 0.35) if len(ok) > 2000 else (12, 0.6)
    for version in sorted({r.version for r in ok if r.version}):
        mine = [r for r in ok if r.version == version]
        ax.scatter(
            [r.start + r.latency for r in mine], [r.latency * 1000 for r in mine],
            s=size, alpha=alpha, color=VERSION_COLORS.get(version, "tab:gray"), linewidths=0,
            label=f"response from v{version} ({len(mine)})",
        )  # fmt: skip
    top = max([r.latency * 1000 for r in ok], default=1.0)
    if bad:
        ax.scatter(
            [r.start + r.latency for r in bad], [top * 1.3] * len(bad), marker="x", s=22,
            color="red", label=f"failed ({len(bad)})", zorder=5,
        )  # fmt: skip
    labelled: set[str] = set()

    def vline(axis: Any, x: float | None, what: str, **kw: Any) -> None:
        if x is None:
            return
        axis.axvline(x, label=None if what in labelled else what, **kw)
        labelled.add(what)

    for c in can["canaries"]:
        j = c["journal"]
        vline(ax, c["write_s"], "YAML write", color="tab:purple", ls="--", lw=1.1)
        ax.text(
            c["write_s"], 0.98, f" {c['name']}: {c['outcome']}", fontsize=8, color="tab:purple",
            transform=ax.get_xaxis_transform(), va="top",
        )  # fmt: skip
        for st in c["stages"]:
            ax.axvspan(
                st["begin_s"], st["end_s"], alpha=0.10,
                color="tab:red" if st["result"] == "failed" else "tab:green",
                label=None if "stage" in labelled else "rollout stage (red: gate failed)",
            )  # fmt: skip
            labelled.add("stage")
            vline(ax, st["begin_s"], "stage begins", color="gray", ls=":", lw=1)
        vline(ax, j["gate_failed_s"], "gate failed (traffic back)", color="red", lw=1.3)
        vline(ax, j["revert_done_s"], "revert journaled", color="darkred", ls="-.", lw=1)
        vline(ax, j["swap_done_s"], "promoted (swap)", color="tab:green", lw=1.5)
    rb = can.get("rollback")
    if rb is not None:
        vline(ax, rb["command_s"], "hotswap rollback run", color="black", ls="--", lw=1.1)
        vline(ax, rb["journal"]["swap_done_s"], "rollback: swap to the standby", color="tab:blue",
              lw=1.5)  # fmt: skip
        rev = rb["revert_seconds"]["mean_ms"]
        ax.text(
            rb["command_s"], 0.90,
            f" rollback -> v{rb['to_version']}: {rb['failed']} failed, first v1 200 after "
            f"{fmt(rb['client']['command_to_first_v1_200_ms'])} ms, daemon revert {fmt(rev)} ms",
            fontsize=8, color="black", transform=ax.get_xaxis_transform(), va="top", ha="right",
        )  # fmt: skip
    steady = can["latency"]["steady_v1"]["p99_ms"]
    if steady:
        ax.axhline(steady, color="gray", ls=":", lw=1, label=f"v1 steady p99 {steady:.1f} ms")
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms)")
    cfg = result["config"]
    ax.set_title(
        f"canaries under load: {can['requests']} requests, {can['failed']} failed, concurrency "
        f"{cfg['concurrency']}, batch {cfg['batch']}, random images ({cfg['protocol']})",
        fontsize=10, loc="left",
    )  # fmt: skip
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, markerscale=2)

    # Share of answers per version (and of failures) in 0.5 s bins: the stage weights at work.
    ax = axes[1]
    if recs:
        ends = np.array([r.start + r.latency for r in recs])
        width = 0.5
        edges = np.arange(0.0, ends.max() + width, width)
        mids = (edges[:-1] + edges[1:]) / 2
        idx = np.digitize(ends, edges) - 1
        total = np.bincount(idx, minlength=len(mids))[: len(mids)].astype(float)
        total[total == 0] = np.nan
        kinds = [(f"v{v}", [r.ok and r.version == v for r in recs], VERSION_COLORS.get(v, "gray"))
                 for v in sorted({r.version for r in ok if r.version})]  # fmt: skip
        kinds.append(("failed", [not r.ok for r in recs], "red"))
        for name, mask, color in kinds:
            counts = np.bincount(idx[np.array(mask, bool)], minlength=len(mids))[: len(mids)]
            ax.plot(mids, 100 * counts / total, color=color, lw=1, label=name, ds="steps-mid")
    for c in can["canaries"]:
        ax.axvline(c["write_s"], color="tab:purple", ls="--", lw=1)
        for st in c["stages"]:
            ax.axvspan(st["begin_s"], st["end_s"], alpha=0.10, color="gray")
    if rb is not None:
        ax.axvline(rb["command_s"], color="black", ls="--", lw=1)
    ax.set_ylabel("% of answers (0.5 s)")
    ax.set_xlabel("seconds since load start")
    ax.set_ylim(-2, 102)
    ax.grid(True, alpha=0.25)
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main_canary(args: argparse.Namespace, out: Path, stamp: str, tmp: Path) -> int:
    stem = f"canary_under_load-{stamp}"
    log(f"building the example models in {tmp}")
    kit = build_kit(tmp)
    payload = make_payload(args.batch, args.seed, args.protocol)
    settings = daemon_defaults()
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
            "daemon": "python -m reconciler.cli run --resync 30 --log-json",
        },
        "machine": machine_info(),
    }
    can, series = run_canary(kit, payload, args, tmp, out, stem)
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
    png = out / f"{stem}.png"
    result["png"] = str(png)
    try:
        plot_canary(result, series, png)
    except Exception as e:  # a broken plot must not lose the figures
        result["png"] = None
        result["plot_error"] = repr(e)
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    print_canary_report(result)
    print(f"results: {json_path}")
    if result["png"]:
        print(f"plot:    {png}")
    if args.short and not result["ok"]:
        outcomes = ", ".join(f"{c['name']}: {c['outcome']}" for c in can["canaries"])
        print(f"FAIL: {outcomes}; {can['failed']} failed requests", file=sys.stderr)
        return 1
    return 0


# -- main ---------------------------------------------------------------------------------------
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
    stem = f"swap_under_load-{stamp}"
    tmp = Path(tempfile.mkdtemp(prefix="hotswap-bench-"))
    if args.scenario == "canary":
        try:
            return main_canary(args, out, stamp, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    try:
        log(f"building the example models in {tmp}")
        kit = build_kit(tmp)
        payload = make_payload(args.batch, args.seed, args.protocol)
        settings = daemon_defaults()
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
