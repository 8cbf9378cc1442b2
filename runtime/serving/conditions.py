"""What the control plane says about desired versions that are not serving: loading, or
unavailable and why (a quarantine's reason).

The data plane cannot know why a version it never got is missing; the controller publishes it
(`reconciler.loop.conditions`, after every planning pass and every finished step) into the
`Repository`'s `conditions`, and the repository index (`runtime.serving.repository_index`)
reads it. Plain data replaced as a whole, so a reader never sees half an update.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

State = Literal["LOADING", "UNAVAILABLE"]


@dataclass(frozen=True)
class Condition:
    version: str  # the desired version
    state: State
    reason: str = ""


class Conditions:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_model: dict[str, Condition] = {}

    def publish(self, conditions: Mapping[str, Condition]) -> None:
        """Replace what is known: one condition per desired model not serving its version."""
        with self._lock:
            self._by_model = dict(conditions)

    def snapshot(self) -> dict[str, Condition]:
        with self._lock:
            return dict(self._by_model)
