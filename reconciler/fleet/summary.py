"""What `hotswap fleet status` says about a set of reports: one row per device, counts per model
version and per state, and whether the fleet (within a label filter) is healthy.

Pure: reports in, rows and counts out; the command (`reconciler.cli.fleet`) does the I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.fleet.report import FAILED, OFFLINE, DeviceState


def matches(state: DeviceState, selector: Mapping[str, str]) -> bool:
    return all(state.labels.get(k) == v for k, v in selector.items())


def select(states: Iterable[DeviceState], selector: Mapping[str, str]) -> list[DeviceState]:
    return sorted((s for s in states if matches(s, selector)), key=lambda s: s.device)


def device_condition(state: DeviceState) -> str:
    """offline, failed (a model failed), or the device's overall model state."""
    if state.status == OFFLINE:
        return OFFLINE
    model_states = {m.state for m in state.models.values()}
    if FAILED in model_states:
        return FAILED
    if len(model_states) == 1:
        return model_states.pop()
    return "mixed" if model_states else "empty"


def unhealthy(state: DeviceState) -> bool:
    return device_condition(state) in (FAILED, OFFLINE)


@dataclass(frozen=True)
class Summary:
    devices: list[DeviceState]
    by_version: dict[str, int]  # "classifier=3" -> devices serving it
    by_state: dict[str, int]  # device condition -> devices
    unhealthy: list[str]  # failed or offline device ids

    def to_json(self) -> dict[str, Any]:
        return {
            "devices": [{**d.to_json(), "condition": device_condition(d)} for d in self.devices],
            "by_version": self.by_version,
            "by_state": self.by_state,
            "unhealthy": self.unhealthy,
        }


def summarize(states: Iterable[DeviceState], selector: Mapping[str, str]) -> Summary:
    devices = select(states, selector)
    versions: Counter[str] = Counter()
    for d in devices:
        if d.status == OFFLINE:
            continue
        for name, model in d.models.items():
            versions[f"{name}={model.active or '-'}"] += 1
    conditions = Counter(device_condition(d) for d in devices)
    return Summary(
        devices,
        dict(sorted(versions.items())),
        dict(sorted(conditions.items())),
        [d.device for d in devices if unhealthy(d)],
    )
