"""When a model may run: never twice at once, not before its backoff, a waiting stage when due."""

from __future__ import annotations

from reconciler.core.outcome import Done, Failed, Wait
from reconciler.core.reasons import Next
from reconciler.loop.schedule import Schedule
from tests.support.clock import FakeClock


def test_a_model_in_flight_is_not_claimed_twice_and_others_go_on() -> None:
    s = Schedule(FakeClock())
    assert s.claim("a", resuming=False)
    assert not s.claim("a", resuming=False)
    assert s.claim("b", resuming=False) and s.busy()
    s.finished("a", Done())
    assert s.claim("a", resuming=False)


def test_a_retryable_failure_backs_off_and_a_quarantined_one_does_not() -> None:
    clock = FakeClock()
    s = Schedule(clock)
    s.claim("a", resuming=False)
    s.finished("a", Failed("fetch-failed", "registry down", Next.RETRY))
    assert not s.claim("a", resuming=False)  # backing off
    clock.advance(10.0)  # past the first backoff (at most 1.5 s)
    assert s.claim("a", resuming=False)
    s.finished("a", Failed("health-nan", "NaN", Next.QUARANTINE))
    assert s.claim("a", resuming=False)  # nothing to back off from: the planner holds it


def test_a_waiting_stage_is_looked_at_when_due_or_when_told() -> None:
    clock = FakeClock()
    s = Schedule(clock)
    s.claim("a", resuming=False)
    s.finished("a", Wait(5.0, "stage 1 running"))
    assert s.next_due() == clock.now + 5.0
    assert not s.claim("a", resuming=True)
    assert s.claim("a", resuming=False)  # its plan changed: not the waiting step
    s.finished("a", Wait(5.0, "stage 1 running"))
    s.look_now("a")  # the candidate failed a request
    assert s.claim("a", resuming=True)
    s.finished("a", Wait(5.0, "stage 1 running"))
    clock.advance(5.0)
    assert s.claim("a", resuming=True)


def test_an_operator_retry_skips_the_backoff() -> None:
    s = Schedule(FakeClock())
    s.claim("a", resuming=False)
    s.finished("a", Failed("fetch-failed", "down", Next.RETRY))
    s.retry_now("a")
    assert s.claim("a", resuming=False)


def test_a_crashed_worker_backs_off_and_the_loop_wakes_when_a_backoff_ends() -> None:
    clock = FakeClock()
    s = Schedule(clock)
    s.claim("a", resuming=False)
    s.finished("a", None)  # the worker crashed outside any step
    assert not s.claim("a", resuming=False)
    due = s.next_due()
    assert due is not None and clock.now < due <= clock.now + 1.5
    clock.advance(2.0)
    assert s.next_due() is None  # ended: nothing to wake for, no spinning
    assert s.claim("a", resuming=False)


def test_a_plan_made_before_a_run_finished_is_not_run() -> None:
    """The pass observed while the model's run was in flight: the quarantine that run's failure
    set is not in its plan, so running that plan would repeat the failed step."""
    s = Schedule(FakeClock())
    s.claim("a", resuming=False)
    seen = s.finishes()  # the next pass observes now, "a" still running
    s.finished("a", Failed("http-not-allowed", "plain http", Next.QUARANTINE))
    assert not s.claim("a", resuming=False, seen=seen)  # stale: the worker's wake plans again
    assert s.claim("a", resuming=False, seen=s.finishes())
    assert s.claim("b", resuming=False, seen=seen)  # other models are not held up
