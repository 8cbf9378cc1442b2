"""One line for people out of a status snapshot: "classifier v3, canary 2/3 to v4; ready".

Sent as systemd's STATUS= by the controller on every status write (`systemctl status` shows it)
and printed by `hotswap status --watch` when its output is not a terminal (a line per change).
It reads the snapshot's JSON body rather than the daemon's objects so both callers share it, and
it tolerates any field missing: an older daemon's snapshot gives a shorter line, not an error.
"""

from __future__ import annotations

from typing import Any

_VERBS = {"fetch": "fetching", "verify": "verifying", "build": "building", "warm": "warming up"}


def status_line(body: dict[str, Any]) -> str:
    models = body.get("models") or {}
    parts = [_model_part(name, m or {}) for name, m in sorted(models.items())]
    state = "ready" if body.get("ready") else "not ready"
    errors = len(body.get("errors") or [])
    tail = f"; {errors} invalid desired file(s)" if errors else ""
    return f"{', '.join(parts) or 'no models'}; {state}{tail}"


def _model_part(name: str, m: dict[str, Any]) -> str:
    active = m.get("active") or {}
    text = f"{name} v{active['version']}" if active.get("version") else f"{name} (none serving)"
    candidate = m.get("candidate") or {}
    rollout = m.get("rollout") or {}
    if rollout:
        stages = rollout.get("stages") or "?"
        text += f" {rollout.get('mode', 'canary')} {int(rollout.get('stage', 0)) + 1}/{stages}"
        if candidate.get("version"):
            text += f" to v{candidate['version']}"
    elif candidate.get("version"):
        text += f" candidate v{candidate['version']}"
    step = m.get("progress") or {}
    if step.get("step"):
        text += f" {_step_text(step)}"
    if m.get("last_failure") and not rollout:
        text += f" (failed: {m['last_failure'].get('reason')})"
    return text


def _step_text(step: dict[str, Any]) -> str:
    done, total = step.get("done"), step.get("total")
    what = _VERBS.get(str(step["step"]), str(step["step"]))
    if isinstance(done, int) and isinstance(total, int) and total > 0:
        return f"{what} {done * 100 // total}%"
    phase = step.get("phase")
    return f"{what} ({phase})" if phase else what
