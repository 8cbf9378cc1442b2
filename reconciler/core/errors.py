"""The error tree: where a failure came from, with a stable `reason` that decides what next.

What happens next is looked up per reason in `reconciler.core.reasons` (one table); the class
only gives the default for a reason the table does not list:

| class            | default next                           | reason examples                 |
|------------------|----------------------------------------|---------------------------------|
| InvalidInput     | quarantine (wait for new input); exit 2| invalid-desired, fp16-on-cpu    |
| TransientError   | retry with backoff and jitter          | fetch-failed, source-missing    |
| IntegrityError   | quarantine that desired digest         | sha256-mismatch, contract-break |
| RuntimeFailure   | quarantine (after the candidate is reverted) | health-nan, load-failed   |

Library exceptions are translated at the boundary with `raise ... from e`; the executor is the
only place that turns these into journal records, retries and status.
"""

from __future__ import annotations

from typing import Any

from reconciler.core.reasons import Next
from reconciler.core.reasons import reason as lookup


class HotswapError(Exception):
    """Base: carries a stable machine-readable `reason` beside the human message."""

    reason = "error"
    default_next = Next.RETRY  # for a reason the table in reconciler.core.reasons does not list

    def __init__(
        self, message: str, reason: str | None = None, detail: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        if reason:
            self.reason = reason
        self.detail = detail or {}  # JSON-safe figures for the journal's `failed` record

    @property
    def message(self) -> str:
        return str(self)

    @property
    def next(self) -> Next:
        return lookup(self.reason, self.default_next).next

    @property
    def terminal(self) -> bool:
        """Not to be tried again for this desired digest until desired state changes."""
        return self.next is Next.QUARANTINE


class InvalidInput(HotswapError):
    reason = "invalid-input"
    default_next = Next.QUARANTINE


class TransientError(HotswapError):
    reason = "transient"


class IntegrityError(HotswapError):
    reason = "integrity"
    default_next = Next.QUARANTINE


class RuntimeFailure(HotswapError):
    reason = "runtime-failure"
    default_next = Next.QUARANTINE
