"""Judging a rollout stage: pure arithmetic on the figures the traffic split counted.

`judge()` is called by the rollout step each time the controller looks at a stage (about once a
second, and at once when the candidate fails a request). It does no I/O and reads no clock —
the caller passes how long the stage has run — so every verdict is a table-driven test.

When each gate is judged, and why:
- errors, output divergence and top-1 agreement are evidence as soon as `min_requests`
  candidate requests are in: a stage fails the moment they are crossed, not at its end, so a
  bad candidate answers as few requests as the gates allow;
- p99 latency ratio is judged only when the stage's time is up: a p99 of the first few dozen
  requests is mostly noise (a page fault, a cold cache), and failing on it would make canaries
  flaky;
- a stage passes only when its time is up *and* it saw `min_requests` candidate requests: with
  too little traffic it keeps waiting (and `hotswap status` says so) — a candidate is never
  promoted unjudged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconciler.core.desired import Gates, RolloutStage

POLL_S = 1.0  # how often a running stage is looked at when nothing wakes the controller sooner


@dataclass(frozen=True)
class Verdict:
    outcome: str  # "pass" | "fail" | "wait"
    why: str
    after_s: float = 0.0  # for "wait": look again after this long


def _fail(why: str) -> Verdict:
    return Verdict("fail", why)


def judge(
    mode: str, stage: RolloutStage, gates: Gates, figures: dict[str, Any], elapsed_s: float
) -> Verdict:
    """The verdict on one stage so far. `figures` is `runtime.serving.traffic.Split.snapshot()`."""
    cand, active, cmp = figures["candidate"], figures["active"], figures["comparison"]
    n, errors = cand["requests"], cand["errors"]
    needed = max(gates.min_requests, 1)
    served = "answered" if mode == "canary" else "mirrored"
    if n >= needed:
        rate = errors / n
        if rate > gates.max_error_rate:
            return _fail(
                f"error rate {rate:.1%} > {gates.max_error_rate:.1%}"
                f" ({errors} of {n} requests {served} by the candidate failed)"
            )
        if gates.max_output_divergence is not None and cmp["compared"]:
            worst = cmp["max_divergence"]
            if not worst <= gates.max_output_divergence:
                return _fail(
                    f"outputs diverge by {worst:.3g} > {gates.max_output_divergence:g}"
                    f" from the active version's on the same request ({cmp['compared']} compared)"
                )
        agreement = cmp["top1_agreement"]
        floor = gates.min_top1_agreement
        if floor is not None and agreement is not None and agreement < floor:
            return _fail(
                f"top-1 agreement {agreement:.1%} < {floor:.1%}"
                f" with the active version ({cmp['compared']} requests compared)"
            )
    remaining = stage.duration_s - elapsed_s
    if remaining > 0:
        return Verdict(
            "wait", f"{elapsed_s:.0f}s of {stage.duration}, {n} requests", min(remaining, POLL_S)
        )
    if n < needed:
        return Verdict("wait", f"waiting for traffic: {n} of {needed} requests", POLL_S)
    compares = gates.max_output_divergence is not None or gates.min_top1_agreement is not None
    if compares and not cmp["compared"]:
        return Verdict("wait", "waiting for a request to compare outputs on", POLL_S)
    ratio_note = ""
    if gates.max_p99_latency_ratio is not None:
        ours, theirs = cand["p99_ms"], active["p99_ms"]
        if ours is None or theirs is None:
            return Verdict("wait", "waiting for latency samples on both versions", POLL_S)
        ratio = ours / theirs if theirs > 0 else float("inf")
        if ratio > gates.max_p99_latency_ratio:
            return _fail(
                f"p99 latency {ours:.1f} ms is {ratio:.2f}x the active version's {theirs:.1f} ms"
                f" (gate {gates.max_p99_latency_ratio:g}x)"
            )
        ratio_note = f", p99 {ratio:.2f}x"
    return Verdict("pass", f"{n} requests, {errors} failed{ratio_note}")
