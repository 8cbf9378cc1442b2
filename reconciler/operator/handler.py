"""The daemon's side of `hotswap rollback | retry`: take requests, journal them, keep overrides.

Called by the controller at the start of every pass, on the loop thread: `take()` handles the
requests waiting in `<state>/requests` (reconciler.operator.channel), `effective()` turns the pass's
desired state into what is planned (reconciler.core.override) and journals overrides that ended.
Every decision is journaled before the request file is removed, and a request whose id the
journal already holds is not applied twice, so a crash anywhere in between is harmless.

Journal records written here (model column = the request's model, "-" when unreadable), typed in
reconciler.state.operator_records:
    override done   OverrideSet       from_version = active, to_version = target
    override done   OverrideCleared   by the operator's cancel, or when desired state ended it
    override failed OverrideRefused   (refused, or the request file could not be read)
    retry    done   RetryRequested
and read back only through reconciler.state.queries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from reconciler.core.desired import Desired, ModelSpec
from reconciler.core.names import Event, Phase
from reconciler.core.override import Override, effective_desired, rollback_target
from reconciler.operator.channel import Malformed, Request, pending, remove, requests_dir
from reconciler.ops.context import Operations
from reconciler.state import queries
from reconciler.state.operator_records import (
    OverrideCleared,
    OverrideRefused,
    OverrideSet,
    RetryRequested,
)
from reconciler.state.status import override_entry

log = structlog.get_logger("hotswap.operator")


class OperatorRequests:
    def __init__(
        self,
        ctx: Operations,
        state_dir: Path,
        lift_quarantine: Callable[[str], tuple[str, str] | None] | None = None,
    ) -> None:
        """`lift_quarantine(model)`: the loop's way to end a quarantine for `hotswap retry`;
        returns (digest, message) of what was quarantined, or None."""
        self.ctx = ctx
        self._lift_quarantine = lift_quarantine
        self.journal = ctx.journal
        self.state_dir = state_dir
        self.overrides: dict[str, Override] = {}
        self._handled: set[str] = set()
        requests_dir(state_dir).mkdir(parents=True, exist_ok=True)

    def load(self, trusted: bool = True) -> None:
        """Startup: the overrides in force and the requests already handled, from the journal.

        An untrusted journal (its hash chain broken) is not restored from, and neither are its
        overrides: the daemon then serves what desired state asks for.
        """
        records = list(self.journal.records())
        self._handled = queries.handled_requests(records)
        self.overrides = queries.overrides(records) if trusted else {}
        for model, override in sorted(self.overrides.items()):
            log.warning("override.in-force", model=model, override=override.describe())

    # -- requests --------------------------------------------------------------------------
    def take(self, desired: Desired) -> list[str]:
        """Handle every waiting request; returns the models a retry was asked for."""
        retried: list[str] = []
        for path, request in pending(self.state_dir):
            if isinstance(request, Malformed):
                if request.id not in self._handled:  # once, even if it cannot be removed
                    model = request.model or "-"
                    self._refuse(model, request.id, request.message, "?", file_kind=request.kind)
            elif request.id not in self._handled:
                try:
                    if request.action == "rollback":
                        self._rollback(request, desired)
                    elif request.action == "cancel-rollback":
                        self._cancel(request)
                    else:
                        self._retry(request, desired)
                        retried.append(request.model)
                except Exception as e:  # never let one request stop the loop
                    log.exception("request.failed", request=request.id)
                    self._refuse(
                        request.model,
                        request.id,
                        f"{request.action} {request.model}: unexpected {type(e).__name__}: {e}",
                        request=request,
                    )
            self._handled.add(request.id)
            if not remove(path):
                log.error("request.not-removed", path=str(path))
        return retried

    def _refuse(
        self,
        model: str,
        request_id: str,
        message: str,
        action: str = "",
        request: Request | None = None,
        file_kind: str | None = None,
    ) -> None:
        refusal = OverrideRefused(
            action=request.action if request else action,
            request_id=request_id,
            message=message,
            reason=request.reason if request else None,
            user=request.user if request else None,
            to=request.to if request else None,
            file_kind=file_kind,
        )
        self.journal.append(model, Event.OVERRIDE, Phase.FAILED, detail=refusal)
        log.error("request.refused", model=model, request=request_id, error=message)

    def _rollback(self, request: Request, desired: Desired) -> None:
        model = request.model
        spec = desired.models.get(model)
        held = not desired.readable or model in desired.held_models()
        if spec is None and not held:
            self._refuse(
                model,
                request.id,
                f"{model} is not in desired state: there is nothing to roll back",
                request=request,
            )
            return
        slot = self.ctx.repo.get(model)
        active = slot.active if slot else None
        current = self.overrides.get(model)
        target = self._target(request, spec, current)
        if isinstance(target, str):
            self._refuse(model, request.id, f"rollback {model}: {target}", request=request)
            return
        if spec is not None:
            target = dataclasses.replace(target, file=spec.file)
        override = Override(
            model=model,
            spec=target,
            # Set again while one is in force (rolling back further): it still ends when the
            # desired version changes from the one it overrode.
            desired_version=spec.version
            if spec
            else (current.desired_version if current else None),
            reason=request.reason,
            user=request.user,
            request_id=request.id,
            requested_at=request.requested_at,
        )
        rec = self.journal.append(
            model,
            Event.OVERRIDE,
            Phase.DONE,
            from_version=active.version if active else None,
            to_version=target.version,
            desired_digest=spec.digest if spec else None,
            revision=desired.revision,
            detail=OverrideSet.of(override),
        )
        # Replaced, never mutated: the status writer (on worker threads) reads it unlocked.
        self.overrides = {
            **self.overrides,
            model: dataclasses.replace(override, seq=rec.seq, set_at=rec.time),
        }
        log.warning(
            "override.set",
            model=model,
            serving=target.version,
            desired=override.desired_version,
            reason=request.reason,
            user=request.user,
        )

    def _target(
        self, request: Request, spec: ModelSpec | None, current: Override | None
    ) -> ModelSpec | str:
        """What this rollback serves (or why not), from the model's promotions in the journal."""
        slot = self.ctx.repo.get(request.model)
        active = slot.active if slot else None
        standby = slot.standby if slot else None
        return rollback_target(
            request.model,
            queries.promotions(self.journal.records(request.model), request.model),
            active_version=active.version if active else None,
            desired_version=spec.version if spec else None,
            standby_digest=standby.meta.get("digest") if standby else None,
            in_store=self.ctx.store.has,
            to=request.to,
            overridden=current is not None,
        )

    def _cancel(self, request: Request) -> None:
        model = request.model
        if model not in self.overrides:
            self._refuse(model, request.id, f"{model} has no override to cancel", request=request)
            return
        why = "cancelled by the operator" + (f": {request.reason}" if request.reason else "")
        self._clear(model, why, request)

    def _clear(self, model: str, why: str, request: Request | None = None) -> None:
        override = self.overrides[model]
        self.overrides = {m: o for m, o in self.overrides.items() if m != model}
        cleared = OverrideCleared(
            why=why,
            request_id=request.id if request else None,
            set_seq=override.seq,
            was_serving=override.spec.version,
            reason=request.reason if request else None,
            user=request.user if request else None,
        )
        self.journal.append(
            model, Event.OVERRIDE, Phase.DONE, from_version=override.spec.version, detail=cleared
        )
        log.warning("override.cleared", model=model, why=why)

    def _retry(self, request: Request, desired: Desired) -> None:
        model = request.model
        failed = self._lift_quarantine(model) if self._lift_quarantine else None
        spec = desired.models.get(model)
        retry = RetryRequested(
            request_id=request.id,
            reason=request.reason,
            user=request.user,
            requested_at=request.requested_at,
            cleared_digest=failed[0] if failed else None,
            previous_error=failed[1] if failed else None,
            overridden=model in self.overrides,
        )
        self.journal.append(
            model,
            Event.RETRY,
            Phase.DONE,
            to_version=spec.version if spec else None,
            desired_digest=spec.digest if spec else None,
            revision=desired.revision,
            detail=retry,
        )
        log.warning("retry.requested", model=model, cleared=bool(failed), user=request.user)

    # -- the pass --------------------------------------------------------------------------
    def effective(self, desired: Desired) -> Desired:
        """Desired state with the overrides applied; overrides that ended are journaled."""
        planned, ended = effective_desired(desired, self.overrides)
        for model, why in ended:
            self._clear(model, why)
        return planned

    def snapshot(self) -> dict[str, Any]:
        return {model: override_entry(o) for model, o in sorted(self.overrides.items())}
