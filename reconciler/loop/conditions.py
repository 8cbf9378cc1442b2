"""Tell the data plane why a desired version is not serving, for Triton's repository index.

The controller calls `publish_conditions` whenever it writes status (after each planning pass
and each finished step), with the desired state it plans from (overrides applied) and the
quarantine: a quarantined desired version is UNAVAILABLE with the quarantine's message, any other
desired version not serving yet is LOADING (with the last failure's message while it is retried).
"""

from __future__ import annotations

from reconciler.core.desired import Desired
from reconciler.loop.quarantine import QuarantineSnapshot
from runtime.serving.conditions import Condition
from runtime.serving.slot import Repository


def publish_conditions(repo: Repository, planned: Desired | None, held: QuarantineSnapshot) -> None:
    conditions: dict[str, Condition] = {}
    for name, spec in (planned.models if planned is not None else {}).items():
        slot = repo.get(name)
        active = slot.active if slot is not None else None
        if active is not None and active.meta.get("digest") == spec.digest:
            continue
        error = held.errors.get(name, "")
        reason = held.reasons.get(name)
        if held.digests.get(name) == spec.digest:
            why = f"quarantined ({reason}): {error}" if reason else f"quarantined: {error}"
            conditions[name] = Condition(spec.version, "UNAVAILABLE", why)
        else:
            why = f"retrying after: {error}" if error else ""
            conditions[name] = Condition(spec.version, "LOADING", why)
    repo.conditions.publish(conditions)
