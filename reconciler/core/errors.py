"""The error tree, by what happens next (not by where it came from).

| class            | next                                   | reason examples                 |
|------------------|----------------------------------------|---------------------------------|
| InvalidInput     | stall until the input changes; exit 2  | invalid-desired, fp16-on-cpu    |
| TransientError   | retry with backoff and jitter          | fetch-failed, source-missing    |
| IntegrityError   | terminal for that desired digest       | sha256-mismatch, contract-break |
| RuntimeFailure   | revert to the serving version          | health-nan, load-failed         |

Library exceptions are translated at the boundary with `raise ... from e`; the executor is the
only place that turns these into journal records, retries and status.
"""

from __future__ import annotations

from typing import Any


class HotswapError(Exception):
    """Base: carries a stable machine-readable `reason` beside the human message."""

    reason = "error"
    terminal = False  # True: do not retry this desired digest until desired state changes

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


class InvalidInput(HotswapError):
    reason = "invalid-input"
    terminal = True


class TransientError(HotswapError):
    reason = "transient"


class IntegrityError(HotswapError):
    reason = "integrity"
    terminal = True


class RuntimeFailure(HotswapError):
    reason = "runtime-failure"
    terminal = True
