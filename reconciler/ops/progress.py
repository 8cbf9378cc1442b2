"""Progress of the long steps (fetch, verify, build, warm) while they run, for `status.json`.

`Preparer` and `Instances` open a step with `StepProgress.step(model, name)` around the work and
report into it; the TensorRT backend's build monitor reports through `build_progress`, which
the daemon's wiring hands to the backend (`runtime.backends.configure`): the backend is built
once per process and knows nothing of models, so the report goes to the step the calling thread
has open (a build runs, and relays its child's progress, on the thread that asked for it).

Every report may ask the status writer for a snapshot, at most twice a second (`WRITE_EVERY_S`)
however fast reports come; each write is atomic like any status write. A report that comes too
soon is not lost: one deferred write follows, so a download that stalls right after a report
still shows how far it got.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from reconciler.state.progress_record import StepProgressRecord

WRITE_EVERY_S = 0.5
_SMOOTHING = 0.3  # weight of the newest rate sample
_current = threading.local()  # (tracker, model) of the step this thread has open


@dataclass
class _Step:
    name: str
    started: float
    unit: str
    done: int | None = None
    total: int | None = None
    phase: str | None = None
    rate: float | None = None
    sampled: tuple[float, int] | None = field(default=None)  # (time, done) of the last sample


class StepProgress:
    def __init__(
        self,
        on_change: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`on_change()`: the status writer, called at most every WRITE_EVERY_S."""
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._steps: dict[str, _Step] = {}
        self._written = float("-inf")
        self._deferred: threading.Timer | None = None

    @contextlib.contextmanager
    def step(
        self, model: str, name: str, unit: str = "", phase: str | None = None
    ) -> Iterator[None]:
        """The step `name` of `model` runs inside the block (reports go to it, from this thread)."""
        with self._lock:
            enclosing = self._steps.get(model)  # a build that verifies first: build again after
            self._steps[model] = _Step(name, self._clock(), unit, phase=phase)
        outer = getattr(_current, "open", None)
        _current.open = (self, model)
        try:
            self._changed()
            yield
        finally:
            _current.open = outer
            with self._lock:
                if enclosing is None:
                    self._steps.pop(model, None)
                else:
                    self._steps[model] = enclosing

    def report(
        self, model: str, done: int | None, total: int | None = None, phase: str | None = None
    ) -> None:
        now = self._clock()
        with self._lock:
            s = self._steps.get(model)
            if s is None:
                return
            if phase is not None and phase != s.phase:
                s.phase, s.sampled, s.rate = phase, None, None  # a new phase counts anew
            if done is not None and s.sampled is not None and now > s.sampled[0]:
                sample = (done - s.sampled[1]) / (now - s.sampled[0])
                s.rate = sample if s.rate is None else s.rate + _SMOOTHING * (sample - s.rate)
            if done is not None and (s.sampled is None or now - s.sampled[0] >= 0.2):
                s.sampled = (now, done)
            s.done, s.total = done, total if total is not None else s.total
        self._changed()

    def snapshot(self) -> dict[str, StepProgressRecord]:
        now = self._clock()
        with self._lock:
            return {model: _record(s, now) for model, s in self._steps.items()}

    def _changed(self) -> None:
        if self._on_change is None:
            return
        now = self._clock()
        with self._lock:
            wait = self._written + WRITE_EVERY_S - now
            if wait > 0:
                if self._deferred is None:  # one trailing write for whatever comes meanwhile
                    self._deferred = threading.Timer(wait, self._write_deferred)
                    self._deferred.daemon = True
                    self._deferred.start()
                return
            self._written = now
        self._on_change()

    def _write_deferred(self) -> None:
        with self._lock:
            self._deferred = None
            self._written = self._clock()
        if self._on_change is not None:
            self._on_change()


def _record(s: _Step, now: float) -> StepProgressRecord:
    eta = None
    if s.rate and s.rate > 0 and s.total is not None and s.done is not None:
        eta = round(max(0.0, (s.total - s.done) / s.rate), 1)
    return StepProgressRecord(
        step=s.name,
        elapsed_s=round(now - s.started, 1),
        done=s.done,
        total=s.total,
        unit=s.unit,
        phase=s.phase,
        rate=round(s.rate, 1) if s.rate is not None else None,
        eta_s=eta,
    )


def build_progress(phase: str, step: int, total: int) -> None:
    """The TensorRT build monitor's report (phase, step of total), to this thread's open step."""
    opened = getattr(_current, "open", None)
    if opened is not None:
        tracker, model = opened
        tracker.report(model, step, total, phase=phase)
