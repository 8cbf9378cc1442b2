"""What one step's attempt came to: `Done | Wait | Failed`, a closed set matched in one place.

Steps report a detail dict or a `Wait`; the executor turns each attempt, exceptions included,
into one of these at a single boundary and then matches on it once: `Done` is journaled and the
plan goes on, `Wait` stops the plan until `after_s` (the step's `begin` is not written again
when it resumes), `Failed` is journaled with its reason and handled as the reason table says
(`reconciler.core.reasons`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reconciler.core.reasons import Next


@dataclass(frozen=True)
class Done:
    detail: Any = field(default_factory=dict)  # a JSON-safe dict or a typed journal record


@dataclass(frozen=True)
class Wait:
    """Under way but not finished (a rollout stage still running): plan again after `after_s`,
    or sooner when woken."""

    after_s: float
    why: str


@dataclass(frozen=True)
class Failed:
    reason: str  # a code of reconciler.core.reasons
    message: str
    next: Next
    detail: dict[str, Any] = field(default_factory=dict)  # JSON-safe figures for the journal
    traceback: str | None = None  # an unexpected exception's, for the journal

    @property
    def quarantines(self) -> bool:
        return self.next is Next.QUARANTINE


Outcome = Done | Wait | Failed
