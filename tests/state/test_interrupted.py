"""The boot count behind the crash-loop fallback: steps begun and never ended, in a row."""

from __future__ import annotations

from reconciler.state import queries
from reconciler.state.probe_records import WarmDone
from tests.support.records import row


def _boot(seq: int, digest: str, step: str = "warm") -> list:
    """What one boot that died in `step` of `digest` leaves: a restore, a verify, the begin."""
    return [
        row(seq, "m", "restore", "begin", desired_digest="d1"),
        row(seq + 1, "m", "restore", "done", desired_digest="d1"),
        row(seq + 2, "m", "verify", "begin", desired_digest=digest),
        row(seq + 3, "m", "verify", "done", desired_digest=digest),
        row(seq + 4, "m", step, "begin", to_version="2", desired_digest=digest),
    ]


def test_each_boot_that_died_in_the_same_step_counts() -> None:
    recs = _boot(1, "d2") + _boot(6, "d2") + _boot(11, "d2")
    found = queries.interrupted(recs)[("m", "d2")]
    assert (found.step, found.boots, found.last.seq) == ("warm", 3, 15)


def test_the_step_ending_restarts_the_count() -> None:
    recs = [*_boot(1, "d2"), row(6, "m", "warm", "done", WarmDone(1), desired_digest="d2")]
    recs += _boot(7, "d2")
    assert queries.interrupted(recs)[("m", "d2")].boots == 1


def test_a_promotion_or_a_retry_restarts_the_count() -> None:
    promoted = [
        *_boot(1, "d2"),
        row(6, "m", "swap", "begin", desired_digest="d2"),
        row(7, "m", "swap", "done", desired_digest="d2"),
    ]
    assert ("m", "d2") not in queries.interrupted(promoted)
    retried = [
        *_boot(1, "d2"),
        *_boot(6, "d2"),
        *_boot(11, "d2")[:2],
        row(13, "m", "retry", "done"),
    ]
    assert ("m", "d2") not in queries.interrupted(retried)


def test_a_kill_in_a_step_that_does_not_run_the_model_is_not_counted() -> None:
    recs = _boot(1, "d2", "fetch") + _boot(6, "d2", "swap") + _boot(11, "d2", "rollout")
    assert queries.interrupted(recs) == {}


def test_a_step_that_ended_is_not_interrupted() -> None:
    recs = [
        row(1, "m", "warm", "begin", desired_digest="d2"),
        row(2, "m", "warm", "failed", {"reason": "probe-timeout"}, desired_digest="d2"),
        row(3, "m", "revert", "begin", desired_digest="d2"),
    ]
    assert queries.interrupted(recs) == {}


def test_probed_remembers_passed_probes_per_deployment() -> None:
    recs = [
        row(
            4,
            "m",
            "warm",
            "done",
            WarmDone(1, 8, False, "k1", {"took_s": 0.3}),
            desired_digest="d2",
        ),
        row(5, "m", "warm", "done", WarmDone(1, 8, False, "k2"), desired_digest="d3"),  # not probed
        row(6, "m", "warm", "done", {"iterations": 1, "memory": 8}, desired_digest="d4"),  # 0.1.0
    ]
    assert queries.probed(recs, "m") == {("d2", "k1"): 4}
