"""The closed-loop load generator both scenarios and both baselines drive: Load and its Rec.

Called by swap_windows.run_with_swaps (the daemon's swaps and the plain server's restarts run
under it), canary_under_load.run_canary and rollback_to_standby. Each worker is a thread with
its own keep-alive httpx.Client that sends the next request as soon as the previous one is
answered, so the offered load is the same for every server compared, and every request leaves
one Rec (seconds since the load started, so figures from different runs line up). The end of
the load is a field (`end_at`), not an argument, because the orchestrators extend it while an
update they are waiting for is still pending: a swap could not be seen without load.
"""

from __future__ import annotations

import threading
import time
from typing import NamedTuple

import httpx
import numpy as np
from example_kit import MODEL
from request_bodies import Payload, RandomBodies, response_version

RAMP_S = 1.0  # requests starting in the first second (connections, caches) are not steady state
RETRY_PAUSE_S = 0.05  # a worker pauses this long after a failed request (both servers alike)
REQUEST_TIMEOUT_S = 10.0
GRACE_S = 30.0  # the load may run this long past --duration to see the last swap through
MAX_REQUESTS_PER_WORKER_PER_S = 2000  # a count bound on every load loop


def sleep_until(deadline: float, stop: threading.Event | None = None) -> None:
    remaining = deadline - time.monotonic()
    if remaining > 0:
        (stop or threading.Event()).wait(remaining)


class Rec(NamedTuple):
    start: float  # seconds since the load started
    latency: float  # seconds
    ok: bool
    status: int | None
    version: str | None
    error: str | None
    hot: bool | None = None  # RandomBodies: some row's input[n,0,0,0] > v5's threshold

    @property
    def end(self) -> float:
        """When the answer (or the failure) came, in seconds since the load started."""
        return self.start + self.latency


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
