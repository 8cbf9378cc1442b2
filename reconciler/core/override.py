"""Operator overrides (`hotswap rollback`) as values: what is served instead of desired state.

An override says "serve this spec for model M while desired state still asks for version V".
It is the operator's emergency switch, and it must survive the next GitOps sync: a resync that
reads the same desired version again does not undo it. It ends by itself when desired state
changes M's version (someone pushed a fix or a revert), or when desired state no longer defines
M; an operator can end it early (`hotswap rollback M --cancel`).

Pure, like the planner it feeds (no I/O, no clock, no journal): `reconciler.operator` takes
requests and keeps the overrides in force, `reconciler.state.queries` replays them from the
journal (the durable record, so an override survives restarts; its record type is
`reconciler.state.operator_records.OverrideSet`), and `hotswap plan` and `hotswap status` read
them from the daemon's status snapshot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from reconciler.core.desired import Desired, ModelSpec, RolloutSpec


@dataclass(frozen=True)
class Override:
    """Serve `spec` for `model` while desired state asks for `desired_version`.

    `desired_version` is None when the override was set while the model's desired file was
    invalid (held): then any valid desired version ends it.
    """

    model: str
    spec: ModelSpec
    desired_version: str | None
    reason: str = ""
    user: str = ""
    request_id: str = ""
    requested_at: str = ""
    seq: int = 0  # journal record that set it
    set_at: str = ""  # its time

    def describe(self) -> str:
        """One line for `hotswap status` and `hotswap plan`."""
        why = f"reason: {self.reason}" if self.reason else "no reason given"
        who = f", by {self.user}" if self.user else ""
        until = (
            f"until desired changes from v{self.desired_version}"
            if self.desired_version is not None
            else "until its desired file is valid again"
        )
        return f"serving v{self.spec.version} by operator rollback ({why}{who}) {until}"


def serving_spec(override: Override, desired: ModelSpec | None) -> ModelSpec:
    """The spec planned in place of `desired`: the override's, swapped in immediately.

    Emergencies do not canary: a staged rollout becomes immediate. Retention and the file it
    belongs to come from desired state (what to keep is the operator's standing policy). Each
    change alters the digest, so fields already equal are kept as they are: in the usual case
    the spec is exactly the one that was promoted, its digest matches the warm standby's, and
    the rollback is a pointer flip.
    """
    spec = override.spec
    if spec.rollout.strategy != "immediate":
        spec = dataclasses.replace(spec, rollout=RolloutSpec())
    if desired is not None:
        spec = dataclasses.replace(spec, retention=desired.retention, file=desired.file)
    return spec


def effective_desired(
    desired: Desired, overrides: dict[str, Override]
) -> tuple[Desired, list[tuple[str, str]]]:
    """Desired state with the overrides in force applied, and the overrides that ended (why).

    Per model with an override:
    - desired asks for the version it was set against: the override's spec is served instead;
    - the model's desired file is invalid (held), or the directory could not be read: the
      override stays and is served (the operator's word is the last valid one);
    - desired asks for another version: ended ("desired version changed 2 -> 3");
    - desired no longer defines the model: ended.
    """
    models = dict(desired.models)
    ended: list[tuple[str, str]] = []
    held = desired.held_models()
    errored = desired.errored_files()
    for name, override in sorted(overrides.items()):
        spec = desired.models.get(name)
        if spec is None:
            if not desired.readable or name in held or override.spec.file in errored:
                models[name] = serving_spec(override, None)
            else:
                ended.append((name, f"desired state no longer defines {name}"))
        elif override.desired_version is None or spec.version != override.desired_version:
            before = override.desired_version or "-"
            ended.append((name, f"desired version changed {before} -> {spec.version}"))
        else:
            models[name] = serving_spec(override, spec)
    return dataclasses.replace(desired, models=models), ended


# -- choosing what to roll back to -------------------------------------------------------------


def _versions(specs: list[ModelSpec], in_store: Callable[[str], bool]) -> list[str]:
    out: list[str] = []
    for spec in specs:
        if in_store(spec.sha256) and spec.version not in out:
            out.append(spec.version)
    return out


def rollback_target(
    model: str,
    promoted: list[ModelSpec],
    *,
    active_version: str | None,
    desired_version: str | None,
    standby_digest: str | None,
    in_store: Callable[[str], bool],
    to: str | None = None,
    overridden: bool = False,
) -> ModelSpec | str:
    """What `hotswap rollback` serves: a spec, or the message refusing it.

    With `to`: the latest promotion of that version. Without: the most recently promoted
    version that is neither the active one nor the desired one (going "back" to what desired
    state asks for is not a rollback, and a second rollback goes further back rather than
    toggling), preferring the warm standby when it qualifies (a pointer flip, no load) — except
    while an update is under way (desired differs from what serves, and no override is in force
    yet: a canary, a shadow, a warm-up): then going back means staying on the version that
    serves now, and the update is abandoned (its candidate dropped, its traffic share returned).
    Either way its bytes must be in the local store: an emergency switch does not wait on a
    registry.
    """
    available = _versions(promoted, in_store)
    offer = (
        f"versions you can roll back to: {', '.join(available)}"
        if available
        else "no promoted version is in the local store"
    )
    if to is not None:
        matching = [s for s in promoted if s.version == to]
        if not matching or not in_store(matching[-1].sha256):
            return f"v{to} is not in the local store; {offer}"
        return matching[-1]
    updating = desired_version is not None and active_version not in (None, desired_version)
    if updating and not overridden:
        serving = [s for s in promoted if s.version == active_version]
        if serving and in_store(serving[-1].sha256):
            return serving[-1]
    earlier = [s for s in promoted if s.version not in (active_version, desired_version)]
    for spec in reversed(earlier):
        if standby_digest and spec.digest == standby_digest:
            return spec
    if not earlier:
        return f"{model} has no earlier version on this device to roll back to; {offer}"
    target = earlier[-1]
    if not in_store(target.sha256):
        return (
            f"v{target.version} (the version promoted before) is not in the local store;"
            f" {offer} (use --to VERSION)"
        )
    return target
