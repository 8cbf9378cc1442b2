"""The download rate limit: a token bucket, and measured against a real local HTTP server."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import httpx

from reconciler.fetch.ratelimit import TokenBucket
from reconciler.fetch.transports import fetch_into_store
from reconciler.state.store import Store
from tests.support.clock import FakeClock
from tests.support.fakeregistry import Entry, FakeRegistry

DATA = os.urandom(600 << 10)
SHA = hashlib.sha256(DATA).hexdigest()
FAST = httpx.Timeout(connect=2.0, read=2.0, write=2.0, pool=2.0)


def test_the_bucket_lets_a_burst_through_then_paces_to_the_rate() -> None:
    clock = FakeClock()
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock.advance(s)

    bucket = TokenBucket(1000, burst=500, clock=clock, sleep=sleep)
    assert bucket.take(500) == 0  # the burst
    assert bucket.take(250) == 0.25  # then each byte costs 1/rate
    assert bucket.take(4000) == 4.0  # a chunk larger than the bucket: paid for by waiting
    clock.advance(10)  # idle: the bucket refills, but only up to the burst
    assert bucket.take(500) == 0 and bucket.take(100) == 0.1
    start, total = clock(), 0
    for _ in range(50):
        bucket.take(64)
        total += 64
    assert abs((clock() - start) - total / 1000) < 1e-6  # the long-run rate is exact


def test_a_download_is_capped_at_the_rate_and_still_lands_whole(tmp_path: Path) -> None:
    rate = 400 << 10  # 600 KiB at 400 KiB/s with a 200 KiB burst: at least 1 s
    with FakeRegistry({"/m.onnx": Entry(DATA)}) as reg:
        started = time.monotonic()
        path = fetch_into_store(
            reg.url("/m.onnx"), SHA, Store(tmp_path / "store"), max_bytes=1 << 20,
            allow_http=True, timeout=FAST, rate_limit=TokenBucket(rate),
        )  # fmt: skip
        elapsed = time.monotonic() - started
    assert path.read_bytes() == DATA
    assert elapsed >= (len(DATA) - rate * 0.5) / rate * 0.95, elapsed
    assert elapsed < 10, elapsed  # paced, not stalled


def test_a_limited_download_that_drops_resumes_where_it_stopped(tmp_path: Path) -> None:
    with FakeRegistry({"/m.onnx": Entry(DATA, drop_after=300 << 10)}) as reg:
        path = fetch_into_store(
            reg.url("/m.onnx"), SHA, Store(tmp_path / "store"), max_bytes=1 << 20,
            allow_http=True, timeout=FAST, sleep=lambda s: None,
            rate_limit=TokenBucket(4 << 20),
        )  # fmt: skip
        assert reg.ranges("/m.onnx")[0] is None
        assert (reg.ranges("/m.onnx")[1] or "").startswith("bytes=")
    assert path.read_bytes() == DATA
