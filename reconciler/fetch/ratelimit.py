"""A device-wide cap on download bandwidth (`--download-rate-limit 2M`), for thin or metered links.

One `TokenBucket` per daemon (the preparer's), shared by every download in flight, so two models
fetched at once share the rate rather than each taking it. `transports._transfer` calls `take`
with each chunk it received; a chunk larger than what the bucket holds is let through and paid
for by sleeping (tokens go negative), so any chunk size works and the long-run rate is exact.
Resuming is untouched: the limit only paces the loop that appends to the `.part`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

BURST_S = 0.5  # at most this many seconds' worth of bytes go out at line rate after a pause


class TokenBucket:
    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("a rate limit is a positive number of bytes per second")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate * BURST_S)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = threading.Lock()

    def take(self, n: int) -> float:
        """Account for `n` bytes received; sleeps as long as the rate says. Returns the wait."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait
