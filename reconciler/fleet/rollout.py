"""Ring rollout decisions: pure functions over the devices' reports, no git and no MQTT.

`hotswap fleet rollout` (`reconciler.cli.fleet_rollout`) does the I/O: it edits and commits each
ring's desired file, watches the reports (`reconciler.fleet.observe`) and asks `judge_ring` after
every change what the ring has come to. Kept apart so every gate is tested without a broker or a
repository, and so the rules read in one place:

- a ring's devices are those reporting the label `ring=<ring>`;
- the ring has converged when every online device serves the version (active, no candidate);
- gates: more failed devices than `max_failed`, or a larger offline share than `max_offline`,
  stops the rollout at once; a ring that converged must then stay healthy for `soak_s`;
- a ring that has not converged by `timeout_s` stops the rollout too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from reconciler.fleet.report import FAILED, OFFLINE, SERVING, DeviceState

RING_LABEL = "ring"
WAITING, SOAKING, PASSED, STOPPED = "waiting", "soaking", "passed", "stopped"


@dataclass(frozen=True)
class Gates:
    max_failed: int = 0
    max_offline: float = 0.05  # a share of the ring (0.05) when `offline_is_share`, else a count
    offline_is_share: bool = True
    soak_s: float = 60.0
    timeout_s: float = 600.0

    def offline_allowed(self, members: int) -> float:
        return self.max_offline * members if self.offline_is_share else self.max_offline


def parse_max_offline(text: str) -> tuple[float, bool]:
    """`5%` -> (0.05, share); `2` -> (2, count)."""
    text = text.strip()
    if text.endswith("%"):
        return float(text[:-1]) / 100.0, True
    return float(int(text)), False


@dataclass(frozen=True)
class Verdict:
    ring: str
    outcome: str  # WAITING | SOAKING | PASSED | STOPPED
    members: int
    converged: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # device -> why
    offline: list[str] = field(default_factory=list)
    reason: str = ""

    def line(self) -> str:
        parts = [
            f"ring {self.ring}: {self.outcome}",
            f"{len(self.converged)}/{self.members} serving",
        ]
        if self.failed:
            parts.append(f"failed {sorted(self.failed)}")
        if self.offline:
            parts.append(f"offline {self.offline}")
        if self.reason:
            parts.append(self.reason)
        return "; ".join(parts)


def ring_members(states: Iterable[DeviceState], ring: str) -> list[DeviceState]:
    return sorted((s for s in states if s.labels.get(RING_LABEL) == ring), key=lambda s: s.device)


def _why_failed(state: DeviceState, model: str, version: str) -> str | None:
    report = state.models.get(model)
    if report is None or report.desired != version:
        return None  # not on this version yet: pending, not failed
    if report.state == FAILED:
        return report.last_error or report.reason or "failed"
    return None


def _serves(state: DeviceState, model: str, version: str) -> bool:
    report = state.models.get(model)
    return report is not None and report.active == version and report.state == SERVING


def judge_ring(
    states: Iterable[DeviceState],
    ring: str,
    model: str,
    version: str,
    gates: Gates,
    elapsed_s: float,
    converged_for_s: float | None,
) -> Verdict:
    """What ring `ring` has come to, `elapsed_s` after its commit; `converged_for_s`: how long it
    has been converged so far (None: it had not converged at the last look)."""
    members = ring_members(states, ring)
    offline = [s.device for s in members if s.status == OFFLINE]
    online = [s for s in members if s.status != OFFLINE]
    failed = {s.device: why for s in online if (why := _why_failed(s, model, version))}
    converged = [s.device for s in online if _serves(s, model, version)]
    pending = [s.device for s in online if s.device not in failed and s.device not in converged]
    verdict = Verdict(ring, WAITING, len(members), converged, pending, failed, offline)

    def stop(reason: str) -> Verdict:
        return Verdict(ring, STOPPED, len(members), converged, pending, failed, offline, reason)

    if not members:
        return stop(f"no device reports the label {RING_LABEL}={ring}")
    if len(failed) > gates.max_failed:
        return stop(f"{len(failed)} failed, more than --max-failed {gates.max_failed}")
    if len(offline) > gates.offline_allowed(len(members)):
        return stop(f"{len(offline)} of {len(members)} offline, more than --max-offline allows")
    if pending or not converged:
        if elapsed_s >= gates.timeout_s:
            return stop(f"not converged within {gates.timeout_s:g}s: {pending} still pending")
        return verdict
    soaked = converged_for_s or 0.0
    if soaked < gates.soak_s:
        return Verdict(ring, SOAKING, len(members), converged, pending, failed, offline,
                       f"soaking {soaked:.0f}/{gates.soak_s:g}s")  # fmt: skip
    return Verdict(ring, PASSED, len(members), converged, pending, failed, offline)


@dataclass(frozen=True)
class RingStep:
    ring: str
    path: str  # the model's desired file in the repository, relative to its root
    before: str | None  # the version the ring has now (None: no file yet)
    after: str

    @property
    def changes(self) -> bool:
        return self.before != self.after


def plan_rings(
    rings: list[str], model: str, version: str, current: dict[str, str | None]
) -> list[RingStep]:
    """One step per ring, in order; `current`: ring -> the model's version there now."""
    return [
        RingStep(ring, f"rings/{ring}/{model}.yaml", current.get(ring), version) for ring in rings
    ]


def describe_plan(steps: list[RingStep], model: str, gates: Gates) -> list[str]:
    """What `--dry-run` prints: one line per ring, then the gates."""
    lines = []
    for i, step in enumerate(steps, 1):
        action = (
            f"commit {step.path}: {model} {step.before or '(none)'} -> {step.after}"
            if step.changes
            else f"{step.path} already at {step.after}: no commit"
        )
        lines.append(f"{i}. ring {step.ring}: {action}; wait for every ring={step.ring} device")
    offline = f"{gates.max_offline:.0%}" if gates.offline_is_share else f"{gates.max_offline:g}"
    lines.append(
        f"gates per ring: failed <= {gates.max_failed}, offline <= {offline}, soak "
        f"{gates.soak_s:g}s, timeout {gates.timeout_s:g}s; on a failed gate: revert every ring"
        " changed, one commit each"
    )
    return lines
