"""Update windows (`rollout.window`): read from desired state, and judged against the wall clock.

`reconciler.source.spec` calls `parse_window` while building a ModelSpec (a bad time zone is an
invalid file, reported with its line like any other). The controller and `hotswap plan` call
`closed_windows` with the current time, and hand the answer to the pure planner through
`Observed.closed_windows`; time zones are resolved here, with the system's tz database, so the
core never reads one.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable
from typing import Any

from reconciler.core.desired import ModelSpec, UpdateWindow


class WindowError(ValueError):
    """`field` (under spec.rollout.window) and why."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


def _minute(text: str) -> int:
    hours, _, minutes = text.partition(":")
    return int(hours) * 60 + int(minutes)


def parse_window(value: Any) -> UpdateWindow:
    """`"02:00-04:00"` or `{hours: "22:00-02:00", timezone: Europe/Berlin}` (schema-checked)."""
    hours, tz = (value, None) if isinstance(value, str) else (value["hours"], value.get("timezone"))
    start_text, _, end_text = hours.partition("-")
    start, end = _minute(start_text), _minute(end_text)
    if start == end:
        raise WindowError(None, f"the window {hours} is empty (start and end are the same)")
    if tz is not None:
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise WindowError(
                "timezone", f"unknown time zone {tz!r} (e.g. Europe/Berlin)"
            ) from None
    return UpdateWindow(start, end, tz, hours + (f" {tz}" if tz else ""))


def local_minute(window: UpdateWindow, now: dt.datetime) -> int:
    """The minute of the day `now` (aware) is in the window's time zone (None: the device's)."""
    local = (
        now.astimezone(zoneinfo.ZoneInfo(window.timezone)) if window.timezone else now.astimezone()
    )
    return local.hour * 60 + local.minute


def closed_windows(
    specs: Iterable[ModelSpec], now: dt.datetime, exempt: Iterable[str] = ()
) -> tuple[frozenset[str], float | None]:
    """Models whose window is closed at `now`, and the seconds until the first of them opens.
    `exempt` never wait: an operator's rollback, a rollout already under way."""
    closed: set[str] = set()
    soonest: float | None = None
    skip = set(exempt)
    for spec in specs:
        window = spec.rollout.window
        if window is None or spec.name in skip:
            continue
        minute = local_minute(window, now)
        wait = window.minutes_until_open(minute)
        if wait:
            closed.add(spec.name)
            seconds = wait * 60 - now.second - now.microsecond / 1e6
            soonest = seconds if soonest is None else min(soonest, seconds)
    return frozenset(closed), soonest
