"""Rollout stages (canary, shadow): start a stage's traffic split, judge it, fail its gate.

The rollout step comes here once per look at a stage (about once a second, or at once when the
candidate fails a request: `on_candidate_error`). How far the candidate got is control-plane
state, kept in `RolloutProgress` — per model, for one candidate digest — not on the data plane's
instance: observe reports it to the planner (`InstanceInfo.stages_passed`), the swap refuses a
candidate that has not passed every stage, and it is cleared whenever the candidate is replaced,
dropped or promoted. It is deliberately not persisted: after a restart the candidate is not
loaded, so it is warmed, checked and canaried again from stage 1.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

import structlog

from reconciler.core.desired import ModelSpec
from reconciler.core.errors import RuntimeFailure
from reconciler.core.gates import POLL_S, Verdict, judge
from reconciler.core.steps import Detail, Wait
from runtime.serving.slot import ModelSlot, Repository
from runtime.serving.traffic import Split

log = structlog.get_logger("hotswap.rollout")


class RolloutProgress:
    """Rollout stages passed by each model's candidate, keyed by model and candidate digest."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._passed: dict[str, tuple[str, int]] = {}  # model -> (candidate digest, stages)

    def passed(self, model: str, digest: str) -> int:
        with self._lock:
            entry = self._passed.get(model)
        return entry[1] if entry is not None and entry[0] == digest else 0

    def record(self, model: str, digest: str, stages: int) -> None:
        with self._lock:
            self._passed[model] = (digest, stages)

    def clear(self, model: str) -> None:
        """The candidate was replaced, dropped or promoted: what it passed no longer counts."""
        with self._lock:
            self._passed.pop(model, None)


def _where(spec: ModelSpec, stage: int) -> str:
    r = spec.rollout
    return f"{r.strategy} {spec.name} v{spec.version} stage {stage + 1}/{len(r.stages)}"


class Rollouts:
    def __init__(
        self,
        repo: Repository,
        progress: RolloutProgress,
        clock: Callable[[], float] = time.monotonic,
        on_candidate_error: Callable[[str], None] | None = None,
    ) -> None:
        """`on_candidate_error(model)`: a candidate in a stage failed a request, so the
        controller judges the stage at once instead of at its next poll."""
        self.repo = repo
        self.progress = progress
        self._clock = clock
        self._on_candidate_error = on_candidate_error

    def rollout(self, spec: ModelSpec, stage: int) -> Detail | Wait:
        """Start stage `stage` (shift or mirror its share of traffic), or judge it.

        A failed gate sends all traffic back to the active version *before* the failure is
        journaled: that is the safe direction, and it is what makes a revert one pointer change
        within milliseconds of the decision. A crash between the two leaves a stage that began
        and never ended, which the next start simply runs again (the candidate is not loaded
        after a restart, so it is warmed, checked and canaried from stage 1)."""
        slot = self.repo.slot(spec.name)
        self._check_ready(spec, stage, slot)
        split = slot.split
        if split is None or split.digest != spec.digest or split.stage != stage:
            return self._start(spec, stage, slot)
        current = spec.rollout.stages[stage]
        figures = split.snapshot()
        verdict = judge(
            spec.rollout.strategy,
            current,
            spec.rollout.gates,
            figures,
            self._clock() - split.started,
        )
        if verdict.outcome == "wait":
            return Wait(verdict.after_s, f"{_where(spec, stage)}: {verdict.why}")
        if verdict.outcome == "fail":
            self._fail(spec, stage, slot, split, verdict, figures)
        self.progress.record(spec.name, spec.digest, stage + 1)
        return {
            "stage": stage + 1,
            "of": len(spec.rollout.stages),
            "weight": current.weight,
            "verdict": verdict.why,
            "figures": figures,
        }

    @staticmethod
    def _check_ready(spec: ModelSpec, stage: int, slot: ModelSlot) -> None:
        cand = slot.candidate
        where = _where(spec, stage)
        if cand is None or cand.meta.get("digest") != spec.digest or not cand.healthy:
            raise RuntimeFailure(
                f"{where}: no health-checked candidate loaded", reason="no-candidate"
            )
        if slot.active is None:
            raise RuntimeFailure(
                f"{where}: a {spec.rollout.strategy} needs the serving version loaded beside the"
                " candidate, and both do not fit in memory (use strategy immediate for this"
                " model, or raise --memory-budget)",
                reason="rollout-no-room",
            )

    def _start(self, spec: ModelSpec, stage: int, slot: ModelSlot) -> Wait:
        rollout = spec.rollout
        current = rollout.stages[stage]
        gates = rollout.gates
        compare = rollout.strategy == "canary" and (
            gates.max_output_divergence is not None or gates.min_top1_agreement is not None
        )
        split = Split(
            rollout.strategy,
            stage,
            current.weight,
            spec.digest,
            compare,
            clock=self._clock,
            error_budget=(gates.max_error_rate, gates.min_requests),
        )
        if self._on_candidate_error is not None:
            split.on_candidate_error = functools.partial(self._on_candidate_error, spec.name)
        slot.start_split(split)
        log.info(
            "rollout.stage",
            model=spec.name,
            version=spec.version,
            stage=stage + 1,
            weight=current.weight,
            duration=current.duration,
            strategy=rollout.strategy,
        )
        return Wait(min(current.duration_s, POLL_S), f"{_where(spec, stage)} started")

    @staticmethod
    def _fail(
        spec: ModelSpec,
        stage: int,
        slot: ModelSlot,
        split: Split,
        verdict: Verdict,
        figures: dict[str, Any],
    ) -> NoReturn:
        """All traffic back to the active version, then the failure (with the figures it was
        judged on) for the executor to journal."""
        # An error gate may have stopped the split routing to the candidate already, at the
        # failing request itself (`tripped_at`); every other gate is decided here.
        tripped = split.tripped
        decided = time.perf_counter()
        canary = spec.rollout.strategy == "canary"
        # a shadow never sent traffic to the candidate: there is no revert to time
        slot.end_split(decided_at=decided if canary else None)
        back_ms = 0.0 if tripped else round((time.perf_counter() - decided) * 1000, 3)
        serving = slot.active.version if slot.active else None
        raise RuntimeFailure(
            f"{_where(spec, stage)}: {verdict.why}; all traffic back to v{serving}",
            reason="rollout-gate",
            detail={
                "stage": stage + 1,
                "figures": figures,
                "traffic_back_ms": back_ms,
                "stopped_at_failing_request": tripped,
            },
        )
