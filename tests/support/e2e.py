"""Helpers for the end-to-end tests: bounded background clients and journal queries.

Every loop here is bounded both in iterations and in wall-clock time, and talks only to the
daemon on 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.daemon import Daemon
from tests.support.kit import infer_body

# Serialised once, with a value JSON writes short (0.5, not 0.10000000149011612): a quarter of
# the bytes of `infer_body()`, so polling and load cost the 2-core test machine far less.
INFER_BYTES = json.dumps(infer_body(0.5)).encode()
JSON_HEADERS = {"Content-Type": "application/json"}


def infer_raw(
    client: httpx.Client, model: str = "classifier", body: bytes = INFER_BYTES
) -> httpx.Response:
    return client.post(f"/v2/models/{model}/infer", content=body, headers=JSON_HEADERS)


def served(d: Daemon, model: str = "classifier", body: bytes = INFER_BYTES) -> str | None:
    """Like `Daemon.served_version`, with the cheaper request body (or `body`)."""
    try:
        r = infer_raw(d.client, model, body)
    except httpx.HTTPError:
        return None
    return str(r.json().get("model_version")) if r.status_code == 200 else None


def wait_served(d: Daemon, version: str, model: str = "classifier", timeout: float = 30.0) -> None:
    d.wait_for(lambda: served(d, model) == version, timeout, f"{model} v{version} serving")


class VersionWatch:
    """Polls one model's inference in a thread and records what answered, until stopped.

    Use as a context manager around anything that must not change what is served, then
    `assert_only("2")`. Bounded: at most `max_s` seconds and `max_polls` requests.
    """

    def __init__(
        self,
        d: Daemon,
        model: str = "classifier",
        interval: float = 0.02,
        max_s: float = 90.0,
        max_polls: int = 20_000,
        body: bytes = INFER_BYTES,  # the request each poll sends (the classifier's by default)
    ) -> None:
        self.url = d.url
        self.body = body
        self.model = model
        self.interval = interval
        self.max_s = max_s
        self.max_polls = max_polls
        self.seen: list[str] = []  # model_version, or "HTTP <code>" / "error: <exc>"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{model}", daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_s
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            for _ in range(self.max_polls):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                try:
                    r = infer_raw(client, self.model, self.body)
                    if r.status_code == 200:
                        self.seen.append(str(r.json().get("model_version")))
                    else:
                        self.seen.append(f"HTTP {r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as e:
                    self.seen.append(f"error: {type(e).__name__}: {e}")
                self._stop.wait(self.interval)

    def __enter__(self) -> VersionWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def assert_only(self, version: str) -> None:
        assert self.seen, f"no polls of {self.model} were made"
        others = sorted({s for s in self.seen if s != version})
        assert not others, (
            f"{self.model} should have served only v{version}; "
            f"{len(self.seen)} polls saw also: {others[:5]}"
        )


def select(
    records: list[dict[str, Any]],
    step: str | None = None,
    phase: str | None = None,
    to_version: str | None = None,
    model: str | None = None,
    after_seq: int = 0,
) -> list[dict[str, Any]]:
    return [
        r
        for r in records
        if (step is None or r["step"] == step)
        and (phase is None or r["phase"] == phase)
        and (to_version is None or r["to_version"] == to_version)
        and (model is None or r["model"] == model)
        and r["seq"] > after_seq
    ]


def last_seq(d: Daemon) -> int:
    recs = d.journal_records()
    return recs[-1]["seq"] if recs else 0


def wait_records(
    d: Daemon,
    what: str,
    timeout: float = 30.0,
    at_least: int = 1,
    **criteria: Any,
) -> list[dict[str, Any]]:
    """Wait until the journal holds `at_least` records matching `criteria`; return them."""
    found: list[dict[str, Any]] = []

    def check() -> bool:
        nonlocal found
        found = select(d.journal_records(), **criteria)
        return len(found) >= at_least

    d.wait_for(check, timeout, what)
    return found


def wait_passes(d: Daemon, passes: int, timeout: float = 30.0) -> None:
    """Wait until the daemon has planned `passes` more times (its status snapshot counts them):
    how a test says "and nothing more happened" without betting on a sleep being long enough."""

    def planned() -> int:
        try:
            return int(json.loads((d.state / "status.json").read_text()).get("passes", 0))
        except (OSError, ValueError):
            return 0  # between the daemon's atomic renames there is always a whole file

    start = planned()
    d.wait_for(lambda: planned() >= start + passes, timeout, f"{passes} more passes")


def wait_status(
    d: Daemon, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30.0
) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def check() -> bool:
        nonlocal seen
        seen = d.status()
        return predicate(seen)

    d.wait_for(check, timeout, what)
    return seen


def model_row(status: dict[str, Any], model: str = "classifier") -> dict[str, Any]:
    rows = [r for r in status["models"] if r["model"] == model]
    assert rows, f"{model} not in status: {status}"
    return rows[0]


def in_sync(d: Daemon, model: str = "classifier", version: str | None = None) -> bool:
    """The daemon's own snapshot says the model is in sync (the whole update, retire included)."""
    row = model_row(d.status(), model)
    active = row["active"] or {}
    return row["state"] == "in sync" and (version is None or active.get("version") == version)


@dataclass
class LoadResult:
    total: int = 0
    failures: list[str] = field(default_factory=list)
    # per thread: (monotonic time the response arrived, model_version)
    per_thread: list[list[tuple[float, str]]] = field(default_factory=list)


class LoadGenerator:
    """N threads, each with its own httpx.Client, POSTing inferences back to back until stopped."""

    def __init__(
        self,
        d: Daemon,
        threads: int = 4,
        max_s: float = 20.0,
        max_requests: int = 5_000,
        bodies: list[bytes] | None = None,  # sent in turn by each thread (default INFER_BYTES)
    ) -> None:
        self.url = d.url
        self.bodies = bodies or [INFER_BYTES]
        self.max_s = max_s
        self.max_requests = max_requests
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.result = LoadResult(per_thread=[[] for _ in range(threads)])
        self.failed_at: list[float] = []  # monotonic times of HTTP error responses
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"load-{i}", daemon=True)
            for i in range(threads)
        ]

    def _run(self, index: int) -> None:
        mine = self.result.per_thread[index]
        deadline = time.monotonic() + self.max_s
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            for i in range(self.max_requests):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                try:
                    r = client.post(
                        "/v2/models/classifier/infer",
                        content=self.bodies[i % len(self.bodies)],
                        headers=JSON_HEADERS,
                    )
                    ok = r.status_code == 200
                    version = str(r.json().get("model_version")) if ok else ""
                    failure = "" if ok else f"HTTP {r.status_code}: {r.text[:200]}"
                    if not ok:
                        self.failed_at.append(time.monotonic())
                except (httpx.HTTPError, ValueError) as e:
                    failure = f"{type(e).__name__}: {e}"
                now = time.monotonic()
                with self._lock:
                    self.result.total += 1
                    if failure:
                        self.result.failures.append(failure)
                    else:
                        mine.append((now, version))

    def start(self) -> LoadGenerator:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> LoadResult:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)
        return self.result

    def first_seen(self, version: str) -> float | None:
        with self._lock:
            times = [t for thread in self.result.per_thread for t, v in thread if v == version]
        return min(times) if times else None

    def successes(self) -> int:
        with self._lock:
            return sum(len(t) for t in self.result.per_thread)
