"""When each model may be worked on next: in flight, backing off, or waiting for a step's turn.

The controller asks `claim` before it hands a model's steps to a worker and tells `finished`
what the run came to; nothing else decides when a model runs. Work is keyed by model: a model
in flight is never claimed twice, so one model's steps never run concurrently, while different
models proceed independently. One lock, because workers finish while the loop claims.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping

import structlog

from reconciler.core.outcome import Failed, Outcome, Wait
from reconciler.core.reasons import SUPERSEDED

log = structlog.get_logger("hotswap.schedule")

MAX_BACKOFF_S = 300.0


def backoff_delay(attempts: int, rng: random.Random | None = None) -> float:
    """Seconds before retrying a model after its `attempts`-th transient failure in a row:
    doubling from 1 s up to MAX_BACKOFF_S, times a jitter of 0.5-1.5 so a fleet that lost its
    registry at the same moment does not come back to it in lockstep."""
    base = min(MAX_BACKOFF_S, 0.5 * 2 ** min(attempts, 32))
    return base * (rng or random).uniform(0.5, 1.5)


class Schedule:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self._backoff: dict[str, tuple[int, float]] = {}  # model -> (attempts, not before)
        # A step that said Wait (a rollout stage running) is due again at a time: until then a
        # pass leaves it alone, unless its plan changed or the candidate failed a request.
        self._due: dict[str, float] = {}
        self._urgent: set[str] = set()  # models whose waiting step must be looked at now
        self._finishes: dict[str, int] = {}  # model -> runs finished so far

    def finishes(self) -> dict[str, int]:
        """How many runs of each model have finished: taken before a pass observes."""
        with self._lock:
            return dict(self._finishes)

    def claim(self, model: str, resuming: bool, seen: Mapping[str, int] | None = None) -> bool:
        """May `model` run now? `resuming`: its plan starts with the step it waits on. `seen`:
        `finishes()` as it was before the pass observed; a run that finished since then is not
        in what the plan was made from (a failure that quarantined, say), so the plan is stale
        and is not run: the worker's wake plans again. A claim holds until `finished`."""
        now = self._clock()
        with self._lock:
            if model in self._busy or now < self._backoff.get(model, (0, 0.0))[1]:
                return False
            if seen is not None and self._finishes.get(model, 0) != seen.get(model, 0):
                return False
            if resuming and now < self._due.get(model, 0.0) and model not in self._urgent:
                return False  # the same stage, not due yet: nothing new to judge
            self._urgent.discard(model)
            self._busy.add(model)
            return True

    def finished(self, model: str, outcome: Outcome | None) -> None:
        """The claim ends; when to plan `model` again follows from its outcome (None: the
        worker crashed outside any step, e.g. the journal could not be written: backed off
        like a failure, so a persistent fault is not retried in a tight loop)."""
        with self._lock:
            self._busy.discard(model)
            self._finishes[model] = self._finishes.get(model, 0) + 1
            self._due.pop(model, None)
            match outcome:
                case Wait(after_s=after):
                    self._due[model] = self._clock() + after
                    self._backoff.pop(model, None)
                case Failed(reason=reason) if reason == SUPERSEDED:
                    self._backoff.pop(model, None)  # what replaced it is due now, not later
                case Failed() as failed if not failed.quarantines:
                    self._back_off(model, failed.reason, str(failed.next))
                case None:
                    self._back_off(model, "worker-crashed", "retry")
                case _:
                    self._backoff.pop(model, None)

    def _back_off(self, model: str, reason: str, next_: str) -> None:
        attempts = self._backoff.get(model, (0, 0.0))[0] + 1
        delay = backoff_delay(attempts)
        self._backoff[model] = (attempts, self._clock() + delay)
        log.info(
            "reconcile.retry-later", model=model, attempt=attempts, delay_s=round(delay, 2),
            reason=reason, next=next_,
        )  # fmt: skip

    def retry_now(self, model: str) -> None:
        """An operator's retry starts over, without the backoff."""
        with self._lock:
            self._backoff.pop(model, None)

    def look_now(self, model: str) -> None:
        """A candidate failed a request: judge its waiting stage at the next pass."""
        with self._lock:
            self._urgent.add(model)

    def next_due(self) -> float | None:
        """The soonest time (on the clock) a model is due again: a waiting step's turn or the
        end of a backoff, so a retry comes when its backoff says, not at the next resync."""
        now = self._clock()
        with self._lock:
            # a backoff that ended stays until the model runs again; only one still to come
            # is worth waking for (an ended one would make the loop spin)
            ending = (until for _, until in self._backoff.values() if until > now)
            return min([*self._due.values(), *ending], default=None)

    def busy(self) -> bool:
        with self._lock:
            return bool(self._busy)
