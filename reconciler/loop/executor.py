"""The executor: runs one model's steps, journaling each transition before it acts.

`Operations` (reconciler.ops.context) holds every side effect a step may have; steps only say
which of its operations they need. Every step — the planner's, the revert after a failure, the
restore at startup — goes through one path, `_attempt`:

    begin (durable before the step acts; not written again when a waiting step resumes)
    apply, with any exception turned into a `Failed` at this one boundary
    `_record`: the one place an outcome becomes a journal record, a metric and a log line

`Done` lets the plan go on; `Wait` (a rollout stage still running) stops it until the controller
plans again; `Failed` is handled as its reason says (reconciler.core.reasons): a loaded
candidate is reverted first (the active version never stopped serving); `repair` tries the step
again at once (what was damaged is already set aside; up to `REPAIRS_AT_ONCE` times); `budget`
counts an unexpected error against the digest and quarantines it when the budget is spent;
`quarantine` holds the desired digest until desired state changes; `retry` leaves the backoff
to the controller.

The executor is the one writer of the `Quarantine`: after a swap or an unload it takes what the
journal holds in force (`queries.quarantined`), so a running daemon and a restarted one agree.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any

import structlog

from reconciler.core.desired import ModelSpec
from reconciler.core.errors import HotswapError
from reconciler.core.names import Phase, StepName
from reconciler.core.outcome import Done, Failed, Outcome, Wait
from reconciler.core.reasons import SUPERSEDED, UNEXPECTED, UNEXPECTED_BUDGET, Next
from reconciler.core.steps import AnyStep, Restore, Revert
from reconciler.loop.quarantine import Quarantine, Quarantined
from reconciler.ops.context import Operations
from reconciler.state import queries
from reconciler.state.records import (
    RestoreBegun,
    RevertBegun,
    StepBegun,
    StepFailed,
    SwapDone,
)
from runtime.serving.metrics import Metrics

log = structlog.get_logger("hotswap.executor")

# A step is redone at once after each repair, this many times: a blob and the artifact built
# from it can both be damaged, and each attempt finds (and sets aside) one of them.
REPAIRS_AT_ONCE = 2


@dataclass(frozen=True)
class _Run:
    """What every record of one run shares: the model and the desired version it serves."""

    model: str
    spec: ModelSpec | None
    revision: str | None

    def columns(self, from_version: str | None) -> dict[str, Any]:
        return {
            "from_version": from_version,
            "to_version": self.spec.version if self.spec else None,
            "desired_digest": self.spec.digest if self.spec else None,
            "revision": self.revision,
        }


class Executor:
    def __init__(
        self,
        ctx: Operations,
        metrics: Metrics | None = None,
        quarantine: Quarantine | None = None,
    ) -> None:
        self.ctx = ctx
        self.journal = ctx.journal
        self.metrics = metrics or Metrics()
        self.quarantine = quarantine if quarantine is not None else Quarantine()
        self._waiting: dict[str, AnyStep] = {}  # model -> step begun and waiting to finish
        self._unexpected: dict[tuple[str, str], int] = {}  # (model, digest) -> failures in a row

    def waiting_on(self, model: str) -> AnyStep | None:
        """The step this model began and is waiting to finish (a rollout stage), if any."""
        return self._waiting.get(model)

    def run(
        self, model: str, steps: list[AnyStep], spec: ModelSpec | None, revision: str | None
    ) -> Outcome:
        """Run `steps` in order; the outcome of the plan: Done, the Wait, or the Failed."""
        run = _Run(model, spec, revision)
        for step in steps:
            if step.done(self.ctx.observe()):
                log.info("step.skip", model=model, step=str(step.name), reason="already done")
                continue
            outcome = self._attempt_repairing(step, run)
            match outcome:
                case Done():
                    continue
                case Wait():
                    return outcome
                case Failed():
                    return self._after_failure(step, outcome, run)
        if spec is not None:
            self._unexpected.pop((model, spec.digest), None)
        return Done()

    # -- the one path every step takes ----------------------------------------------------------
    def _attempt_repairing(self, step: AnyStep, run: _Run, because: str | None = None) -> Outcome:
        """`_attempt`, redone at once after each repair (the damaged copy is set aside)."""
        outcome = self._attempt(step, run, because)
        for _ in range(REPAIRS_AT_ONCE):
            if not (isinstance(outcome, Failed) and outcome.next is Next.REPAIR):
                break
            outcome = self._attempt(step, run, because)
        return outcome

    def _attempt(self, step: AnyStep, run: _Run, because: str | None = None) -> Outcome:
        from_version = self._active_version(run.model)
        waiting = self._waiting.pop(run.model, None)
        if waiting is not None and waiting != step:
            self._superseded(waiting, run, from_version)
        if waiting != step:
            self.journal.append(
                run.model, step.name, Phase.BEGIN, detail=_begun(step, because),
                **run.columns(from_version),
            )  # fmt: skip
            log.info("step.begin", model=run.model, step=str(step.name), plan=str(step))
        started = time.perf_counter()
        try:
            result = step.apply(self.ctx)
        except Exception as e:
            outcome: Outcome = self._failure_of(e, step, run)
        else:
            outcome = result if isinstance(result, Wait) else Done(result or {})
        self._record(step, run, outcome, from_version, time.perf_counter() - started)
        return outcome

    def _superseded(self, waiting: AnyStep, run: _Run, from_version: str | None) -> None:
        """A step that said Wait (a rollout stage) and is not in the new plan (desired state or
        an operator moved on): close its `begin` so no step is ever left open in the journal."""
        spec = getattr(waiting, "spec", None)
        failed = Failed(SUPERSEDED, f"{waiting} was superseded by a new plan", Next.RETRY)
        record = StepFailed(failed.reason, failed.message, False, next=str(failed.next))
        columns = _Run(run.model, spec, run.revision).columns(from_version)
        self.journal.append(run.model, waiting.name, Phase.FAILED, detail=record, **columns)
        log.info("step.superseded", model=run.model, step=str(waiting.name), plan=str(waiting))

    def _failure_of(self, e: Exception, step: AnyStep, run: _Run) -> Failed:
        """Any exception as a `Failed`, its next step from the reason table (and the budget)."""
        if isinstance(e, HotswapError):
            failed = Failed(e.reason, e.message, e.next, dict(e.detail))
        else:
            failed = Failed(
                UNEXPECTED,
                f"{step.name} {run.model}: unexpected {type(e).__name__}: {e}",
                Next.BUDGET,
                traceback="".join(traceback.format_exception(e)),
            )
        if isinstance(step, Restore | Revert):
            # Neither is a verdict on the desired version: the plan takes over from a restore
            # that failed (and proves the version the normal way); a revert that failed is
            # planned again while the candidate is still loaded.
            return failed if failed.next is Next.REPAIR else _with_next(failed, Next.RETRY)
        if run.spec is None:
            return failed
        key = (run.model, run.spec.digest)
        if failed.next is not Next.BUDGET:
            self._unexpected.pop(key, None)  # "in a row": another kind of failure breaks it
            return failed
        self._unexpected[key] = self._unexpected.get(key, 0) + 1
        if self._unexpected[key] >= UNEXPECTED_BUDGET:
            failed = _with_next(failed, Next.QUARANTINE)
        return failed

    def _record(
        self, step: AnyStep, run: _Run, outcome: Outcome, from_version: str | None, took: float
    ) -> None:
        """The one place an outcome becomes a journal record, metrics and a log line."""
        columns = run.columns(from_version)
        match outcome:
            case Wait(why=why):
                self._waiting[run.model] = step
                log.debug("step.wait", model=run.model, step=str(step.name), why=why)
            case Done(detail=detail):
                self.metrics.steps.labels(step.name, "done").observe(took)
                self.journal.append(run.model, step.name, Phase.DONE, detail=detail, **columns)
                if step.name is StepName.SWAP:
                    self.metrics.swaps.labels(run.model).inc()
                if step.name in (StepName.SWAP, StepName.UNLOAD):
                    self._sync_quarantine(run.model)
                log.info(
                    "step.done",
                    model=run.model,
                    step=str(step.name),
                    version=run.spec and run.spec.version,
                )
            case Failed() as failed:
                self.metrics.steps.labels(step.name, "failed").observe(took)
                self.metrics.step_failures.labels(step.name, failed.reason, failed.next).inc()
                record = StepFailed(
                    failed.reason, failed.message, failed.quarantines, failed.detail,
                    failed.traceback, str(failed.next),
                )  # fmt: skip
                self.journal.append(run.model, step.name, Phase.FAILED, detail=record, **columns)
                if failed.quarantines and run.spec is not None:
                    # at once, not after the revert: an operator's retry in between must find it
                    self.quarantine.quarantine(run.model, run.spec.digest, failed.message)
                    self._unexpected.pop((run.model, run.spec.digest), None)
                self.quarantine.note_error(run.model, failed.message, failed.reason)
                log.error(
                    "step.failed", model=run.model, step=str(step.name), reason=failed.reason,
                    next=str(failed.next), error=failed.message,
                )  # fmt: skip

    def _after_failure(self, step: AnyStep, failed: Failed, run: _Run) -> Failed:
        slot = self.ctx.repo.get(run.model)
        loaded = slot is not None and slot.candidate is not None
        reverting = loaded or self.ctx.in_sequential_swap(run.model)
        if reverting and not isinstance(step, Revert | Restore):
            version = slot.candidate.version if slot and slot.candidate else "-"
            revert = Revert(run.model, version, failed.message)
            if isinstance(self._attempt_repairing(revert, run, because=failed.reason), Done):
                self.metrics.reverts.labels(run.model, failed.reason).inc()
        return failed

    def _sync_quarantine(self, model: str) -> None:
        """After a swap or unload: the quarantine the journal holds in force for `model`."""
        held = queries.quarantined(self.journal.records(model)).get(model)
        if held is None:
            self.quarantine.clear(model)

    def _active_version(self, model: str) -> str | None:
        slot = self.ctx.repo.get(model)
        return slot.active.version if slot and slot.active else None

    # -- startup ------------------------------------------------------------------------------
    def restore_all(self) -> dict[str, Outcome]:
        """Startup: serve the last promoted version of every model before anything else."""
        outcomes: dict[str, Outcome] = {}
        last_promoted = queries.last_promoted(self.journal.records())
        self.ctx.repo.declare(last_promoted)  # 503 while restoring, not 404 (until desired says)
        self._reload_quarantine()  # a version the daemon kept dying in is not restored
        for model, promoted in sorted(last_promoted.items()):
            swap, rec = promoted.body, promoted.rec
            if not isinstance(swap, SwapDone):
                problem = getattr(swap, "problem", None)
                log.error("restore.unreadable", model=model, seq=rec.seq, error=problem)
                continue
            held = self.quarantine.get(model)
            if held is not None and held.digest == swap.spec.digest:
                log.error("restore.skipped-quarantined", model=model, version=swap.spec.version,
                          error=held.message)  # fmt: skip
                continue
            # It was authorised when promoted (the chain-verified journal says by whom):
            # serving it again at boot must not wait for the registry to be reachable.
            try:
                auth = swap.authorization
                self.ctx.seed_authorization(swap.spec, dict(auth) if auth is not None else None)
            except (TypeError, ValueError) as e:  # a later release's shape: check it anew
                log.warning("restore.authorization-unreadable", model=model, error=str(e))
            step = Restore(model, swap.spec, rec.seq)
            outcomes[model] = self.run(model, [step], swap.spec, rec.revision)
        return outcomes

    def _reload_quarantine(self) -> None:
        """Terminal failures the journal still holds in force stay quarantined across restarts."""
        for model, held in queries.quarantined(self.journal.records()).items():
            self.quarantine.quarantine(model, held.digest, held.message)

    def lift_quarantine(self, model: str) -> Quarantined | None:
        """An operator's `hotswap retry`: plan this model again; returns what was lifted."""
        for key in [k for k in self._unexpected if k[0] == model]:
            self._unexpected.pop(key, None)  # a new attempt gets the whole budget
        return self.quarantine.clear(model)


def _begun(step: AnyStep, because: str | None) -> Any:
    if isinstance(step, Restore):
        return RestoreBegun(step.from_seq)
    if because is not None:
        return RevertBegun(because)
    return StepBegun(str(step))


def _with_next(failed: Failed, next_: Next) -> Failed:
    return Failed(failed.reason, failed.message, next_, failed.detail, failed.traceback)
