"""Quarantine: the desired digests that failed terminally, and each model's last error.

A terminal failure (a bad signature, a health check that found NaN) is not retried in a loop:
the planner plans nothing for that desired digest until desired state changes it, a swap or an
unload ends it, or an operator asks `hotswap retry`. The executor is the one writer: it sets a
quarantine on a terminal failure, notes every failure's message, clears both when a swap or an
unload is done, rebuilds the lot from the journal at startup, and lifts it for the operator's
retry. Everyone else reads a plain-data `snapshot()` (observe takes it as two mappings, so
`reconciler.ops` needs nothing from this layer). Model workers write while the loop and the
status writer read, hence the lock.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple


class Quarantined(NamedTuple):
    digest: str  # the desired digest that failed terminally
    message: str  # why


def _frozen(d: dict[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(d))


@dataclass(frozen=True)
class QuarantineSnapshot:
    """Plain data: model -> quarantined desired digest, model -> last error message."""

    digests: Mapping[str, str] = field(default_factory=lambda: _frozen({}))
    errors: Mapping[str, str] = field(default_factory=lambda: _frozen({}))
    reasons: Mapping[str, str] = field(default_factory=lambda: _frozen({}))  # of the last error


class Quarantine:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, Quarantined] = {}
        self._errors: dict[str, str] = {}
        self._reasons: dict[str, str] = {}

    def quarantine(self, model: str, digest: str, message: str) -> None:
        """Do not retry `digest` for `model`; `message` is also its last error."""
        with self._lock:
            self._held[model] = Quarantined(digest, message)
            self._errors[model] = message

    def note_error(self, model: str, message: str, reason: str | None = None) -> None:
        """A failure worth showing in status, quarantined or not (a transient one is retried);
        `reason` is its code in reconciler.core.reasons, which says what happens next."""
        with self._lock:
            self._errors[model] = message
            if reason is None:
                self._reasons.pop(model, None)
            else:
                self._reasons[model] = reason

    def clear(self, model: str) -> Quarantined | None:
        """End the quarantine and forget the last error; returns what was quarantined."""
        with self._lock:
            self._errors.pop(model, None)
            self._reasons.pop(model, None)
            return self._held.pop(model, None)

    def get(self, model: str) -> Quarantined | None:
        with self._lock:
            return self._held.get(model)

    def last_error(self, model: str) -> str | None:
        with self._lock:
            return self._errors.get(model)

    def __contains__(self, model: object) -> bool:
        with self._lock:
            return model in self._held

    def snapshot(self) -> QuarantineSnapshot:
        with self._lock:
            digests = {m: q.digest for m, q in self._held.items()}
            return QuarantineSnapshot(
                _frozen(digests), _frozen(self._errors), _frozen(self._reasons)
            )
