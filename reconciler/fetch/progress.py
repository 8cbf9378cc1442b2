"""Download progress: the `Progress` callback, its throttle, and the TTY bar the CLI draws.

`transports.fetch_into_store` reports through `Throttled`, so a fast local copy does not call
the callback once per chunk; `ops.prepare` feeds every fetch's progress to a `ProgressBar`,
which draws only when its stream (stderr) is a terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

Progress = Callable[[int, "int | None"], None]

PROGRESS_EVERY_S = 0.25


class Throttled:
    """Calls `progress` at most every PROGRESS_EVERY_S, and always for the final count."""

    def __init__(self, progress: Progress | None, clock: Callable[[], float]) -> None:
        self.progress = progress
        self.clock = clock
        self.last = float("-inf")
        self.total: int | None = None

    def __call__(self, done: int, total: int | None, final: bool = False) -> None:
        self.total = total if total is not None else self.total
        now = self.clock()
        if self.progress and (final or now - self.last >= PROGRESS_EVERY_S):
            self.last = now
            self.progress(done, total)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f}"


class ProgressBar:
    """`progress` callback drawing `\\r  label  12.3/45.6 MiB  27%` on a TTY; silent otherwise."""

    def __init__(self, label: str = "", stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self._drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        label = f"{self.label}  " if self.label else ""
        if total:
            text = f"\r  {label}{_mib(done)}/{_mib(total)} MiB  {done * 100 // total}%"
        else:
            text = f"\r  {label}{_mib(done)} MiB"
        self.stream.write(text)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
