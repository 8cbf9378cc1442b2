"""Download progress: the `Progress` callback, its throttle, and the bars the daemon draws.

`transports.fetch_into_store` reports through `Throttled`, so a fast local copy does not call
the callback once per chunk; `ops.prepare` feeds every fetch's progress to a `terminal_bar`,
drawn with `rich` only when the daemon's stderr is a terminal (`status.json` has the same
progress for `hotswap status --watch` everywhere else).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TextIO

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


class TerminalBars:
    """Every download in flight, as one `rich` progress display on a terminal; silent elsewhere.

    One display for all of them because rich draws one live display per console: two models
    fetched at once get two bars in it. It refreshes only when a download reports (already
    throttled), so no drawing thread runs in the daemon; it stops once the last bar is done,
    leaving the finished bars on the screen.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self._lock = threading.Lock()
        self._display: Any = None
        self._running = 0

    @contextlib.contextmanager
    def bar(self, label: str) -> Iterator[Progress]:
        if not self.enabled:
            yield lambda done, total: None
            return
        with self._lock:
            display = self._display or self._start()
            task = display.add_task(label, total=None)
            self._running += 1

        def update(done: int, total: int | None) -> None:
            display.update(task, completed=done, total=total)
            display.refresh()

        try:
            yield update
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    display.stop()
                    self._display = None

    def _start(self) -> Any:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichProgress

        self._display = RichProgress(
            TextColumn("  {task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TaskProgressColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(file=self.stream, force_terminal=True),
            auto_refresh=False,
        )
        self._display.start()
        return self._display


_stderr_bars: TerminalBars | None = None


def terminal_bar(label: str) -> contextlib.AbstractContextManager[Progress]:
    """A download's bar on the daemon's stderr (when it is a terminal): `with ... as update`."""
    global _stderr_bars
    if _stderr_bars is None or _stderr_bars.stream is not sys.stderr:
        _stderr_bars = TerminalBars()
    return _stderr_bars.bar(label)
