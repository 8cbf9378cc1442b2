"""Retrying after transient failures (a registry down, a dropped download): backoff with jitter."""

from __future__ import annotations

import random

from reconciler.loop.schedule import MAX_BACKOFF_S, backoff_delay


def test_transient_failures_back_off_exponentially_with_jitter_up_to_a_cap() -> None:
    rng = random.Random(7)
    for attempts, base in [(1, 1.0), (2, 2.0), (5, 16.0), (9, 256.0), (10, MAX_BACKOFF_S)]:
        delays = [backoff_delay(attempts, rng) for _ in range(200)]
        assert base * 0.5 <= min(delays) and max(delays) <= base * 1.5
        assert max(delays) - min(delays) > base * 0.5  # jittered, not one fixed value
    assert backoff_delay(10_000, rng) <= MAX_BACKOFF_S * 1.5  # no overflow, still capped
