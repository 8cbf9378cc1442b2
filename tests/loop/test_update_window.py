"""Update windows: prepared at any time, swapped in only inside the window (injected clocks)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from reconciler.core.desired import ModelSpec, RolloutSpec, UpdateWindow
from reconciler.core.observed import InstanceInfo, ModelObserved, Observed
from reconciler.core.plan import plan_model, waits_for_window
from reconciler.core.steps import Fetch, Swap
from reconciler.source.window import closed_windows, parse_window
from tests.support.harness import Device
from tests.support.units import plain_spec

UTC = dt.timezone.utc
NIGHT = UpdateWindow(2 * 60, 4 * 60, "UTC", "02:00-04:00 UTC")


def at(hour: int, minute: int = 0, tz: dt.tzinfo = UTC) -> dt.datetime:
    return dt.datetime(2026, 12, 2, hour, minute, 30, tzinfo=tz)


def windowed(spec: ModelSpec, window: UpdateWindow | None = NIGHT) -> ModelSpec:
    import dataclasses

    return dataclasses.replace(spec, rollout=dataclasses.replace(spec.rollout, window=window))


def test_windows_by_minute_of_day_across_midnight_and_in_a_time_zone() -> None:
    late = parse_window({"hours": "22:00-02:00", "timezone": "Europe/Berlin"})
    assert (late.start, late.end, late.text) == (1320, 120, "22:00-02:00 Europe/Berlin")
    assert late.contains(23 * 60) and late.contains(60) and not late.contains(12 * 60)
    assert NIGHT.minutes_until_open(60) == 60 and NIGHT.minutes_until_open(150) == 0
    spec = windowed(plain_spec("2"), late)
    # 21:30 UTC is 22:30 in Berlin (CET, +1): open; 20:30 UTC is 21:30 there: closed
    assert closed_windows([spec], at(21, 30)) == (frozenset(), None)
    closed, opens_in = closed_windows([spec], at(20, 30))
    assert closed == {spec.name} and opens_in == pytest.approx(30 * 60 - 30)
    assert closed_windows([spec], at(20, 30), exempt={spec.name})[0] == frozenset()
    with pytest.raises(ValueError):
        parse_window({"hours": "02:00-04:00", "timezone": "Mars/Olympus"})
    with pytest.raises(ValueError):
        parse_window("03:00-03:00")


def test_a_window_never_changes_the_digest() -> None:
    spec = plain_spec("2")
    assert windowed(spec).digest == spec.digest == windowed(spec, None).digest


def test_the_planner_holds_the_swap_while_the_window_is_closed() -> None:
    spec = windowed(plain_spec("2"))
    v1 = InstanceInfo("1", "a" * 64, "key-1", "digest-1")
    serving = ModelObserved(spec.name, active=v1)
    closed = Observed({spec.name: serving}, closed_windows=frozenset({spec.name}))
    steps = plan_model(spec, serving, closed)
    assert waits_for_window(spec, serving, closed)
    assert isinstance(steps[0], Fetch) and not any(isinstance(s, Swap) for s in steps)
    assert any(
        isinstance(s, Swap) for s in plan_model(spec, serving, Observed({spec.name: serving}))
    )
    first = ModelObserved(spec.name)  # nothing serves yet: nothing to disturb, no wait
    assert any(
        isinstance(s, Swap)
        for s in plan_model(spec, first, Observed(closed_windows=closed.closed_windows))
    )
    assert windowed(plain_spec("2"), None).rollout == RolloutSpec()


def test_prepared_outside_the_window_swapped_in_when_it_opens(tmp_path: Path) -> None:
    device = Device.create(tmp_path)
    try:
        device.converge(device.spec("1"))
        assert device.serving() == "1"
        device.wall = at(10)  # outside 02:00-04:00
        v2 = windowed(device.spec("2"))
        device.converge(v2)
        assert device.serving() == "1"  # still the old version
        for step in ("fetch", "verify", "build", "warm", "health-check"):
            assert device.records(step=step, phase="done", to_version="2"), step
        assert not device.records(step="swap", to_version="2")
        device.wall = at(2, 15)  # the window opens
        device.converge(v2)
        assert device.serving() == "2"
    finally:
        device.close()


def test_a_window_survives_the_journals_json() -> None:
    from reconciler.core.desired import spec_from_json, spec_to_json

    spec = windowed(plain_spec("2"))
    assert spec_from_json(spec_to_json(spec)) == spec
