"""A model's traffic split during one rollout stage, and the figures it is judged by.

A canary sends `weight` percent of requests to the candidate; a shadow sends every request to
the active version and mirrors `weight` percent to the candidate, whose answers are compared and
thrown away. Which requests go is deterministic, so a test (or an operator reading the access
log) can say in advance where a request lands:

- a request with an id (`X-Request-Id`) goes by a keyed hash of that id: the same id always
  lands on the same arm within a stage, and about `weight` percent of distinct ids go;
- a request without one goes by its arrival number n, placed at frac(n * golden ratio) in
  [0, 1): a low-discrepancy sequence, so the first k requests send k * weight / 100 to the
  candidate give or take a few (the error grows only like log k: at most 4.3 over 100,000
  requests at any weight), where a random draw could send none of a stage's first dozen and
  drift by hundreds over a long one.

The split only counts; the control plane (`reconciler.core.gates`) judges. Figures are kept per stage:
a new stage starts with new counters, so a stage is judged on its own traffic.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_GOLDEN = (math.sqrt(5) - 1) / 2
LATENCY_SAMPLES = 4096  # the latest this many per arm and stage: enough for a stable p99


@dataclass
class ArmStats:
    """Requests one arm (active or candidate) answered during the stage."""

    requests: int = 0
    errors: int = 0
    _latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))

    def record(self, ok: bool, seconds: float) -> None:
        self.requests += 1
        if ok:
            self._latencies.append(seconds)
        else:
            self.errors += 1

    def p99_ms(self) -> float | None:
        if not self._latencies:
            return None
        return float(np.percentile(np.fromiter(self._latencies, float), 99)) * 1000

    def snapshot(self) -> dict[str, Any]:
        p99 = self.p99_ms()
        return {
            "requests": self.requests,
            "errors": self.errors,
            "p99_ms": None if p99 is None else round(p99, 3),
        }


@dataclass
class CompareStats:
    """Candidate and active answers to the same requests, compared."""

    compared: int = 0
    max_divergence: float = 0.0  # largest |candidate - active| seen on any output element
    rows: int = 0
    top1_agree: int = 0
    dropped: int = 0  # mirrors skipped because the mirror queue was full

    def record(self, divergence: float, rows: int, agree: int) -> None:
        self.compared += 1
        if not divergence <= self.max_divergence:  # NaN counts as the largest
            self.max_divergence = divergence
        self.rows += rows
        self.top1_agree += agree

    def snapshot(self) -> dict[str, Any]:
        return {
            "compared": self.compared,
            "max_divergence": self.max_divergence,
            "top1_agreement": (self.top1_agree / self.rows) if self.rows else None,
            "dropped": self.dropped,
        }


def compare_outputs(
    candidate: dict[str, np.ndarray], active: dict[str, np.ndarray]
) -> tuple[float, int, int]:
    """(max |difference| over all outputs, rows, rows whose argmax agrees on the first output).

    A missing output or a changed shape is an infinite divergence: the answers do not compare.
    """
    divergence = 0.0
    for name, want in active.items():
        got = candidate.get(name)
        if got is None or got.shape != want.shape:
            divergence = math.inf
            continue
        if want.size:
            diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
            worst = float(diff.max())
            divergence = max(divergence, math.inf if math.isnan(worst) else worst)
    first = next(iter(active), None)
    rows = agree = 0
    if first is not None and first in candidate:
        want, got = active[first], candidate[first]
        if want.ndim >= 2 and got.shape == want.shape and want.shape[-1] > 1:
            a = want.reshape(-1, want.shape[-1]).argmax(axis=1)
            b = got.reshape(-1, got.shape[-1]).argmax(axis=1)
            rows, agree = int(a.size), int((a == b).sum())
    return divergence, rows, agree


class Split:
    """One stage of one rollout: who gets which request, and what each arm did with it."""

    def __init__(
        self,
        mode: str,
        stage: int,
        weight: float,
        digest: str,
        compare: bool,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        error_budget: tuple[float, int] | None = None,
    ) -> None:
        if mode not in ("canary", "shadow"):
            raise ValueError(f"unknown rollout mode {mode!r}")
        self.mode = mode
        self.stage = stage
        self.weight = float(weight)
        self.digest = digest  # the candidate's desired digest: a split belongs to one deployment
        self.compare = compare  # canary: also run the active version on canary requests
        self._clock = clock
        self.started = clock()
        self.active = ArmStats()
        self.candidate = ArmStats()
        self.comparison = CompareStats()
        self._key = hashlib.sha256(f"{seed}:{digest}:{stage}".encode()).digest()[:16]
        self._arrivals = itertools.count(seed % 1_000_003)
        self._lock = threading.Lock()
        # Told when the candidate fails a request, so the stage is judged at once, not at the
        # control plane's next look: a failing candidate should answer as few requests as can be.
        self.on_candidate_error: Callable[[], None] | None = None
        # (max error rate, min requests): the error gate, checked here on every candidate
        # failure so the split stops sending requests to the candidate at that very request —
        # the control plane judges and journals a moment later, but no more requests wait on it.
        self._error_budget = error_budget
        self.tripped_at: float | None = None  # perf_counter when the error budget ran out
        self.tripped_on: tuple[int, int] | None = None  # (candidate requests, errors) then

    def chooses(self, request_id: str | None) -> bool:
        """True when this request goes to (canary) or is mirrored to (shadow) the candidate."""
        share = self.weight / 100.0
        if request_id:
            h = hashlib.blake2b(request_id.encode(), digest_size=8, key=self._key).digest()
            return int.from_bytes(h, "big") / 2**64 < share
        return (next(self._arrivals) * _GOLDEN) % 1.0 < share

    @property
    def tripped(self) -> bool:
        return self.tripped_at is not None

    def record(self, to_candidate: bool, ok: bool, seconds: float) -> bool:
        """Count one request; True when this one exhausted the candidate's error budget."""
        tripped = False
        with self._lock:
            (self.candidate if to_candidate else self.active).record(ok, seconds)
            if to_candidate and self._error_budget and self.tripped_at is None:
                max_rate, min_requests = self._error_budget
                n, errors = self.candidate.requests, self.candidate.errors
                if n >= max(min_requests, 1) and errors > max_rate * n:
                    self.tripped_at = time.perf_counter()
                    self.tripped_on = (n, errors)
                    tripped = True
        if to_candidate and not ok and self.on_candidate_error is not None:
            self.on_candidate_error()
        return tripped

    def record_comparison(self, divergence: float, rows: int, agree: int) -> None:
        with self._lock:
            self.comparison.record(divergence, rows, agree)

    def record_dropped(self) -> None:
        with self._lock:
            self.comparison.dropped += 1

    def snapshot(self) -> dict[str, Any]:
        """The stage's figures; once the error budget ran out, the candidate's counts as they
        were at that request (requests still in flight then must not dilute the verdict)."""
        with self._lock:
            cand = self.candidate.snapshot()
            if self.tripped_on is not None:
                cand["requests"], cand["errors"] = self.tripped_on
            return {
                "mode": self.mode,
                "stage": self.stage,
                "weight": self.weight,
                "elapsed_s": round(self._clock() - self.started, 3),
                "active": self.active.snapshot(),
                "candidate": cand,
                "comparison": self.comparison.snapshot(),
            }
