"""structlog set-up for the daemon (`hotswap run` calls `configure`): three renderings, chosen
from where stderr goes.

- A journal stream (systemd sets `$JOURNAL_STREAM` to stderr's `device:inode`): each line starts
  with its syslog priority (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug), which journald
  strips and records, so `journalctl -p err` selects errors. The text is `event key=value`
  without a timestamp (journald has its own), or JSON with `--log-json`. Every line of a
  multi-line record (a traceback) carries the prefix, or journald would file the rest as info.
- A terminal: structlog's coloured console.
- Anything else (a file, a pipe, a container runtime): one JSON object per line.

The variable is checked against stderr itself, as systemd documents, so a process that merely
inherited it (stderr redirected elsewhere) does not prefix lines a file would then keep.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog

# syslog priorities (RFC 5424) of structlog's level names
PRIORITY = {"critical": 2, "exception": 3, "error": 3, "warning": 4, "info": 6, "debug": 7}


def configure(level: str = "info", json_logs: bool | None = None) -> None:
    journal = to_journal(sys.stderr)
    if json_logs is None:
        json_logs = not journal and not sys.stderr.isatty()
    renderer: Any
    if json_logs:
        renderer = structlog.processors.JSONRenderer()
    elif journal:
        renderer = structlog.dev.ConsoleRenderer(colors=False, pad_event=0)
    else:
        renderer = structlog.dev.ConsoleRenderer()
    stamp = [] if journal else [structlog.processors.TimeStamper(fmt="iso", utc=True)]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            *stamp,
            structlog.processors.format_exc_info,
            SyslogPrefixed(renderer, keep_level=json_logs) if journal else renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(logging, level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def to_journal(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """Whether `stream` is the journal stream `$JOURNAL_STREAM` (`device:inode`) names."""
    value = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # no descriptor (a test's StringIO)
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


class SyslogPrefixed:
    """Wraps the final renderer: `<N>` before every line of what it renders; the level itself
    is left out of text lines (journald shows the priority)."""

    def __init__(self, renderer: Any, keep_level: bool) -> None:
        self.renderer = renderer
        self.keep_level = keep_level

    def __call__(self, logger: Any, method: str, event: Any) -> str:
        priority = PRIORITY.get(str(event.get("level", method)), 6)
        if not self.keep_level:
            event.pop("level", None)
        text = str(self.renderer(logger, method, event))
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines() or [""])
