"""What "in sync" means, once: the planner has nothing left to do for a model.

`hotswap plan` (exit 0), `hotswap status` (the "in sync" / "overridden" state) and the operator
commands (`hotswap rollback | retry`, following a request to its end) all ask this one question,
so they cannot disagree: status used to compare versions while plan compared build keys, and
said "in sync" for a model that plan (and the daemon) would rebuild after a backend upgrade.
Defined through `plan_model` rather than beside it, so a change to the planner changes this too.
Pure; the CLI builds `observed` from the daemon's status snapshot, which carries the backend
versions that go into every build key.
"""

from __future__ import annotations

from reconciler.core.desired import ModelSpec
from reconciler.core.observed import Observed
from reconciler.core.plan import plan_model


def in_sync(spec: ModelSpec, observed: Observed) -> bool:
    """True when `spec`'s model is exactly as `spec` asks: not quarantined, and no step is left
    (the active instance has spec's version and the build key this device's backends give it,
    no candidate is left over, no standby is kept that retention no longer wants)."""
    current = observed.model(spec.name)
    if current.failed_digest == spec.digest:
        return False  # nothing planned, but only because the daemon gave up on it
    return not plan_model(spec, current, observed)
