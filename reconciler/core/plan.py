"""The planner: `plan(desired, observed) -> list[Step]`, pure and deterministic.

No I/O, no clock, no randomness: the same inputs always give the same steps, which is what
`hotswap plan` prints and what the table-driven tests pin down. Per model, in name order:

- desired and in sync (the active instance has the desired version and build key): nothing,
  except reverting a candidate that is no longer wanted (a rollout overtaken by a rollback),
  releasing a standby that retention no longer keeps, and fetching again its blob when that
  was found damaged (it serves from its intact build artifact meanwhile);
- desired but its digest failed terminally before (quarantined): the same, until it changes;
- desired and proven as the warm standby (same build and digest): swap back, retire;
- desired and different: the remaining steps of fetch -> verify -> build -> warm -> health-check
  -> [rollout stage 1..n, for canary and shadow] -> swap -> retire, dropping those
  `done(observed)` already; a stale candidate is reverted first. With nothing serving (a fresh
  device) there is nothing to compare a canary or shadow with: the stages are skipped and the
  swap says why (`rollout_skip_reason`), after the health check as always;
- desired and different, but its update window (`rollout.window`) is closed while another
  version serves: everything up to the health check, then nothing until the window opens
  (`observed.closed_windows` says so; an operator's rollback is never in it);
- held (its file is invalid, or a file that failed to load used to define it): nothing;
- not desired anymore: unload (unless the directory itself could not be read).
"""

from __future__ import annotations

from reconciler.core.buildkey import build_key
from reconciler.core.desired import Desired, ModelSpec
from reconciler.core.observed import ModelObserved, Observed
from reconciler.core.steps import (
    AnyStep,
    Build,
    Fetch,
    HealthCheck,
    Retire,
    Revert,
    Rollout,
    Swap,
    Unload,
    Verify,
    Warm,
)


def rollout_skip_reason(spec: ModelSpec, serving: bool) -> str | None:
    """Why `spec`'s rollout stages are skipped (None: they run). Shared by the planner and the
    swap itself, so what `hotswap plan` prints is what the journal records."""
    if serving or not spec.rollout.stages:
        return None
    return (
        f"nothing serves {spec.name} yet, so there is no version to compare a"
        f" {spec.rollout.strategy} with: v{spec.version} is deployed after its health check"
    )


def plan(desired: Desired, observed: Observed) -> list[AnyStep]:
    steps: list[AnyStep] = []
    held = desired.held_models()
    errored_files = desired.errored_files()
    for name in sorted(set(desired.models) | set(observed.models)):
        spec = desired.models.get(name)
        current = observed.model(name)
        if spec is not None:
            steps.extend(plan_model(spec, current, observed))
        elif not desired.readable or name in held or _source_file(current) in errored_files:
            continue
        elif current.active or current.candidate or current.standby:
            version = (current.active or current.candidate or current.standby).version  # type: ignore[union-attr]
            steps.append(Unload(name, version))
    return steps


def _serves(spec: ModelSpec, current: ModelObserved, observed: Observed) -> bool:
    """The active instance is spec's version, built with the key this device gives it now (a
    backend upgrade changes the key). Not yet "in sync": see reconciler.core.insync."""
    active = current.active
    key = build_key(spec, observed.backend_version(spec.backend))
    return (
        active is not None
        and active.version == spec.version
        and active.build_key == key
        and active.batching == spec.batching_key  # batching turned on, off or changed: reload
    )


def waits_for_window(spec: ModelSpec, current: ModelObserved, observed: Observed) -> bool:
    """A served version would be replaced outside `spec`'s update window: the swap waits
    (a model that serves nothing yet has nothing to disturb, so it never waits)."""
    return (
        spec.rollout.window is not None
        and spec.name in observed.closed_windows
        and current.active is not None
    )


def plan_model(spec: ModelSpec, current: ModelObserved, observed: Observed) -> list[AnyStep]:
    quarantined = current.failed_digest == spec.digest
    synced = _serves(spec, current, observed)
    if synced or quarantined:
        return _settled(spec, current, observed, quarantined)
    steps = _deploy(spec, current, observed)
    if waits_for_window(spec, current, observed):
        # fetch, verify, build, warm and prove now; traffic moves only inside the window
        return [s for s in steps if not isinstance(s, Rollout | Swap | Retire)]
    return steps


def _deploy(spec: ModelSpec, current: ModelObserved, observed: Observed) -> list[AnyStep]:
    """The steps still to take to serve `spec` in place of what serves now."""
    key = build_key(spec, observed.backend_version(spec.backend))
    name = spec.name
    retention = spec.retention
    standby = current.standby
    if (
        current.candidate is None
        and standby is not None
        and standby.build_key == key
        and standby.digest == spec.digest
    ):
        # The wanted version is loaded and proven as the warm standby: swap straight back.
        return [
            Swap(name, spec, key),
            Retire(name, retention.keep_standby, retention.keep_versions),
        ]
    chain: list[AnyStep] = []
    if current.candidate is not None and (
        current.candidate.build_key != key or current.candidate.digest != spec.digest
    ):
        chain.append(Revert(name, current.candidate.version))
    chain += [
        Fetch(name, spec),
        Verify(name, spec),
        Build(name, spec, key),
        Warm(name, spec, key),
        HealthCheck(name, spec, key),
    ]
    warmed = Warm(name, spec, key).done(observed)
    pending: list[AnyStep] = [
        step
        for step in chain
        # verify and build feed warm: once the candidate is loaded they have nothing left to do
        if not step.done(observed) and not (warmed and isinstance(step, Verify | Build | Fetch))
    ]
    skipped = rollout_skip_reason(spec, serving=current.active is not None)
    # rollout stages, swap and retire are judged when their turn comes
    pending += [
        stage
        for i in range(0 if skipped else len(spec.rollout.stages))
        if not (stage := Rollout(name, spec, key, i)).done(observed)
    ]
    pending += [
        Swap(name, spec, key, rollout_skipped=skipped),
        Retire(name, retention.keep_standby, retention.keep_versions),
    ]
    return pending


def _settled(
    spec: ModelSpec, current: ModelObserved, observed: Observed, quarantined: bool
) -> list[AnyStep]:
    """What is left for a model that serves its desired version, or whose desired digest is
    quarantined: leftovers only, never a new deployment."""
    steps: list[AnyStep] = []
    if current.candidate is not None:
        steps.append(Revert(spec.name, current.candidate.version))
    if not quarantined and current.standby is not None and not spec.retention.keep_standby:
        # keep_standby turned off since the last swap: free the standby now, not at the next
        steps.append(Retire(spec.name, False, spec.retention.keep_versions))
    if not quarantined and spec.sha256 in observed.damaged and spec.sha256 not in observed.blobs:
        steps.append(Fetch(spec.name, spec))  # the store heals while the artifact serves
    return steps


def _source_file(current: ModelObserved) -> str | None:
    inst = current.active or current.candidate or current.standby
    return inst.source_file if inst else None
