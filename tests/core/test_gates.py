"""Judging a rollout stage: when each gate fails, when a stage waits, when it passes."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.core.desired import Gates, RolloutStage
from reconciler.core.gates import POLL_S, judge

STAGE = RolloutStage(10, 30.0, "30s")


def figures(
    n: int = 100,
    errors: int = 0,
    p99: float | None = 10.0,
    active_p99: float | None = 10.0,
    compared: int = 0,
    divergence: float = 0.0,
    agreement: float | None = None,
) -> dict[str, Any]:
    return {
        "candidate": {"requests": n, "errors": errors, "p99_ms": p99},
        "active": {"requests": 9 * n, "errors": 0, "p99_ms": active_p99},
        "comparison": {
            "compared": compared,
            "max_divergence": divergence,
            "top1_agreement": agreement,
            "dropped": 0,
        },
    }


CASES = [
    # (id, gates, figures, elapsed, outcome, words in the reason)
    ("errors fail before the stage ends", Gates(max_error_rate=0.05, min_requests=20),
     figures(n=20, errors=2), 3.0, "fail", "error rate 10.0% > 5.0% (2 of 20"),
    ("errors under the gate keep waiting", Gates(max_error_rate=0.05, min_requests=20),
     figures(n=40, errors=2), 3.0, "wait", "3s of 30s, 40 requests"),
    ("too few requests to judge errors", Gates(max_error_rate=0.01, min_requests=50),
     figures(n=10, errors=10), 3.0, "wait", ""),
    ("stage over without traffic waits, never passes", Gates(min_requests=50),
     figures(n=49), 31.0, "wait", "waiting for traffic: 49 of 50"),
    ("stage over with traffic passes", Gates(min_requests=50),
     figures(n=50, errors=0), 31.0, "pass", "50 requests, 0 failed"),
    ("p99 is not judged before the stage ends", Gates(max_p99_latency_ratio=1.5),
     figures(p99=100.0, active_p99=10.0), 3.0, "wait", ""),
    ("p99 over the ratio fails at the end", Gates(max_p99_latency_ratio=1.5),
     figures(p99=30.0, active_p99=10.0), 30.0, "fail", "3.00x the active version's 10.0 ms"),
    ("p99 within the ratio passes", Gates(max_p99_latency_ratio=1.5),
     figures(p99=14.0, active_p99=10.0), 30.0, "pass", "p99 1.40x"),
    ("p99 without samples on the active version waits", Gates(max_p99_latency_ratio=1.5),
     figures(active_p99=None), 30.0, "wait", "latency samples"),
    ("divergent outputs fail early", Gates(max_output_divergence=1e-3, min_requests=5),
     figures(n=5, compared=5, divergence=0.2), 1.0, "fail", "diverge by 0.2 > 0.001"),
    ("NaN divergence fails", Gates(max_output_divergence=1e-3, min_requests=5),
     figures(n=5, compared=5, divergence=float("nan")), 1.0, "fail", "diverge"),
    ("top-1 disagreement fails", Gates(min_top1_agreement=0.99, min_requests=5),
     figures(n=5, compared=5, agreement=0.9), 1.0, "fail", "top-1 agreement 90.0% < 99.0%"),
    ("agreement holds and passes", Gates(min_top1_agreement=0.99, min_requests=5),
     figures(n=5, compared=5, agreement=1.0), 30.0, "pass", ""),
    ("comparing gates need a comparison", Gates(max_output_divergence=1e-3, min_requests=5),
     figures(n=5, compared=0), 30.0, "wait", "compare"),
    ("min_requests 0 still needs one request", Gates(min_requests=0),
     figures(n=0), 30.0, "wait", "0 of 1"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("gates", "figs", "elapsed", "outcome", "words"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_judge(gates: Gates, figs: dict, elapsed: float, outcome: str, words: str) -> None:
    verdict = judge("canary", STAGE, gates, figs, elapsed)
    assert verdict.outcome == outcome, verdict
    assert words in verdict.why
    if outcome == "wait":
        assert 0 < verdict.after_s <= POLL_S


def test_wait_is_never_longer_than_what_is_left_of_the_stage() -> None:
    verdict = judge("canary", STAGE, Gates(), figures(), 29.75)
    assert verdict.outcome == "wait" and verdict.after_s == pytest.approx(0.25)


def test_shadow_names_mirrored_requests() -> None:
    verdict = judge("shadow", STAGE, Gates(min_requests=10), figures(n=10, errors=5), 1.0)
    assert verdict.outcome == "fail" and "requests mirrored by the candidate" in verdict.why
