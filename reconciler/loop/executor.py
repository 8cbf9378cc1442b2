"""The executor: runs one model's steps, journaling each transition before it acts.

`Operations` (reconciler.ops.context) holds every side effect a step may have; steps only say which
of its operations they need. `Executor.run` is the one interpreter of outcomes:
it writes `begin` durably before `apply`, then `done` or `failed` — or nothing yet, when the step
says `Wait` (a rollout stage still running): the run stops there, the controller runs the plan
again later, and the same step is resumed without a second `begin`; on a failure after the
candidate was loaded it reverts (the active version never stopped serving); a terminal failure
quarantines that desired digest so it is not retried in a loop, a transient one is retried by
the controller with backoff. The executor is the one writer of the `Quarantine` (a swap or an
unload ends it; so does the operator's retry, through `lift_quarantine`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import structlog

from reconciler.core.desired import ModelSpec
from reconciler.core.errors import HotswapError, RuntimeFailure
from reconciler.core.names import Phase, StepName
from reconciler.core.steps import AnyStep, Revert, Wait
from reconciler.loop.quarantine import Quarantine, Quarantined
from reconciler.ops.context import Operations
from reconciler.state import queries
from reconciler.state.records import RestoreBegun, RestoreDone, RestoreFailed, SwapDone
from runtime.serving.metrics import Metrics

log = structlog.get_logger("hotswap.executor")

RESTORE = StepName.RESTORE


@dataclass(frozen=True)
class Outcome:
    """Done, or failed with a reason; `terminal` failures quarantine the desired digest."""

    ok: bool
    reason: str = ""
    message: str = ""
    terminal: bool = False
    requeue_after: float | None = None  # ok but not finished: run the plan again after this


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

    def waiting_on(self, model: str) -> AnyStep | None:
        """The step this model began and is waiting to finish (a rollout stage), if any."""
        return self._waiting.get(model)

    def _active_version(self, model: str) -> str | None:
        slot = self.ctx.repo.get(model)
        return slot.active.version if slot and slot.active else None

    def run(
        self, model: str, steps: list[AnyStep], spec: ModelSpec | None, revision: str | None
    ) -> Outcome:
        common: dict[str, Any] = {
            "to_version": spec.version if spec else None,
            "desired_digest": spec.digest if spec else None,
            "revision": revision,
        }
        for step in steps:
            if step.done(self.ctx.observe()):
                log.info("step.skip", model=model, step=step.name, reason="already done")
                continue
            from_version = self._active_version(model)
            resumed = self._waiting.pop(model, None) == step
            if not resumed:
                self.journal.append(
                    model,
                    step.name,
                    "begin",
                    from_version=from_version,
                    detail={"step": str(step)},
                    **common,
                )
                log.info(
                    "step.begin",
                    model=model,
                    step=step.name,
                    version=common["to_version"],
                    plan=str(step),
                )
            started = time.perf_counter()
            try:
                result = step.apply(self.ctx)
            except Exception as e:
                self.metrics.steps.labels(step.name, "failed").observe(
                    time.perf_counter() - started
                )
                err = (
                    e
                    if isinstance(e, HotswapError)
                    else RuntimeFailure(
                        f"{step.name} {model}: unexpected {type(e).__name__}: {e}",
                        reason="unexpected",
                    )
                )
                return self._failed(model, step, err, from_version, spec, common)
            if isinstance(result, Wait):
                self._waiting[model] = step
                log.debug("step.wait", model=model, step=step.name, why=result.why)
                return Outcome(ok=True, message=result.why, requeue_after=result.after_s)
            detail = result or {}
            self.metrics.steps.labels(step.name, "done").observe(time.perf_counter() - started)
            if step.name == "swap":
                self.metrics.swaps.labels(model).inc()
            self.journal.append(
                model, step.name, "done", from_version=from_version, detail=detail, **common
            )
            if step.name in ("swap", "unload"):
                self.quarantine.clear(model)
            log.info("step.done", model=model, step=step.name, version=common["to_version"])
        return Outcome(ok=True)

    def _failed(
        self,
        model: str,
        step: AnyStep,
        err: HotswapError,
        from_version: str | None,
        spec: ModelSpec | None,
        common: dict[str, Any],
    ) -> Outcome:
        detail = {
            "reason": err.reason,
            "message": err.message,
            "terminal": err.terminal,
            **err.detail,
        }
        self.journal.append(
            model, step.name, "failed", from_version=from_version, detail=detail, **common
        )
        log.error(
            "step.failed",
            model=model,
            step=step.name,
            version=common["to_version"],
            reason=err.reason,
            error=err.message,
        )
        self.quarantine.note_error(model, err.message)
        slot = self.ctx.repo.get(model)
        loaded = slot is not None and slot.candidate is not None
        if (loaded or self.ctx.in_sequential_swap(model)) and not isinstance(step, Revert):
            self.journal.append(
                model,
                "revert",
                "begin",
                from_version=from_version,
                detail={"because": err.reason},
                **common,
            )
            revert_detail = self.ctx.revert(model, err.message)
            self.metrics.reverts.labels(model, err.reason).inc()
            self.journal.append(
                model, "revert", "done", from_version=from_version, detail=revert_detail, **common
            )
            log.warning(
                "revert.done",
                model=model,
                serving=revert_detail.get("serving") if revert_detail else None,
            )
        if err.terminal and spec is not None:
            self.quarantine.quarantine(model, spec.digest, err.message)
        return Outcome(ok=False, reason=err.reason, message=err.message, terminal=err.terminal)

    def restore_all(self) -> dict[str, Outcome]:
        """Startup: serve the last promoted version of every model before anything else."""
        outcomes: dict[str, Outcome] = {}
        for model, promoted in sorted(queries.last_promoted(self.journal.records()).items()):
            swap, rec = promoted.body, promoted.rec
            if not isinstance(swap, SwapDone):
                log.error(
                    "restore.unreadable",
                    model=model,
                    seq=rec.seq,
                    error=getattr(swap, "problem", None),
                )
                continue
            spec = swap.spec
            common = {
                "to_version": spec.version,
                "desired_digest": spec.digest,
                "revision": rec.revision,
            }
            self.journal.append(model, RESTORE, Phase.BEGIN, detail=RestoreBegun(rec.seq), **common)
            try:
                # It was authorised when promoted (the chain-verified journal says by whom):
                # serving it again at boot must not wait for the registry to be reachable.
                auth = swap.authorization
                self.ctx.seed_authorization(spec, dict(auth) if auth is not None else None)
                restored = self.ctx.restore(spec) or {}
            except Exception as e:
                message = e.message if isinstance(e, HotswapError) else f"{type(e).__name__}: {e}"
                self.journal.append(
                    model, RESTORE, Phase.FAILED, detail=RestoreFailed(message), **common
                )
                log.error("restore.failed", model=model, version=spec.version, error=message)
                outcomes[model] = Outcome(False, "restore-failed", message)
                continue
            done = RestoreDone(spec.version, str(restored.get("build_key", "")))
            self.journal.append(model, RESTORE, Phase.DONE, detail=done, **common)
            log.info("restore.done", model=model, version=spec.version)
            outcomes[model] = Outcome(True)
        self._reload_quarantine()
        return outcomes

    def _reload_quarantine(self) -> None:
        """Terminal failures the journal still holds in force stay quarantined across restarts."""
        for model, held in queries.quarantined(self.journal.records()).items():
            self.quarantine.quarantine(model, held.digest, held.message)

    def lift_quarantine(self, model: str) -> Quarantined | None:
        """An operator's `hotswap retry`: plan this model again; returns what was lifted."""
        return self.quarantine.clear(model)
