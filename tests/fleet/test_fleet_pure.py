"""Wake payloads, the report built from a status snapshot, the fleet summary and the ring gates."""

from __future__ import annotations

import pytest

from reconciler.fleet import report, rollout, summary, topics
from reconciler.fleet.mqtt import MqttConfigError, MqttSettings
from reconciler.fleet.report import DeviceState, ModelReport


def test_a_wake_carries_at_most_a_commit_id() -> None:
    assert topics.wake_commit(b"") is None
    assert topics.wake_commit(b" 0123abcd\n") == "0123abcd"
    for bad in (b"version: 9", b"x" * 65, b"\xff\xfe", b"ABCDEF0"):
        with pytest.raises(topics.WakeRejected):
            topics.wake_commit(bad)


def test_state_topics_round_trip() -> None:
    topic = topics.device_state("hs", "dev-1")
    assert topic == "hs/devices/dev-1/state"
    assert topics.device_of_state_topic("hs", topic) == "dev-1"
    assert topics.device_of_state_topic("hs", "hs/devices/a/b/state") is None
    assert topics.device_of_state_topic("hs", "hs/fleet/sync") is None


def test_broker_url() -> None:
    assert MqttSettings("mqtt://broker").address() == ("broker", 1883, False)
    assert MqttSettings("mqtts://broker:9000").address() == ("broker", 9000, True)
    with pytest.raises(MqttConfigError):
        MqttSettings("http://broker").address()


def _entry(desired: str | None, active: str | None, **extra: object) -> dict:
    return {
        "desired": None if desired is None else {"version": desired, "digest": f"d{desired}"},
        "active": None if active is None else {"version": active},
        "candidate": None, "standby": None, "failed_digest": None, "last_error": None,
        "last_failure": None, **extra,
    }  # fmt: skip


def test_report_from_snapshot_says_each_models_state() -> None:
    snap = {
        "ready": True, "revision": "abc123", "passes": 4, "updated": "t",
        "models": {
            "a": _entry("2", "2"),
            "b": _entry("3", "2", failed_digest="d3", last_error="NaN in outputs",
                        last_failure={"reason": "health-failed"}),
            "c": _entry("2", "1", candidate={"version": "2"}),
            "d": _entry("1", None),
            "e": _entry(None, "1"),
        },
    }  # fmt: skip
    state = report.from_snapshot(snap, "dev", {"ring": "canary"}, "1.0")
    assert {n: m.state for n, m in state.models.items()} == {
        "a": "serving", "b": "failed", "c": "rolling-out", "d": "pending", "e": "removing",
    }  # fmt: skip
    assert state.models["b"].last_error == "NaN in outputs"
    assert state.models["b"].reason == "health-failed"
    back = DeviceState.from_json(state.to_json())
    assert back == state and back.desired_commit == "abc123"
    assert (
        state.comparable()
        == report.from_snapshot(
            {**snap, "passes": 9}, "dev", {"ring": "canary"}, "1.0"
        ).comparable()
    )
    with pytest.raises(report.NotAReport):
        DeviceState.from_json({**state.to_json(), "apiVersion": "hotswap/v9"})


def _device(name: str, ring: str, active: str | None, desired: str, state: str = "serving",
            status: str = "online") -> DeviceState:  # fmt: skip
    model = ModelReport(desired, active, None, None, state, "NaN" if state == "failed" else None)
    return DeviceState(name, status, {"ring": ring}, models={"m": model})


def test_summary_counts_and_flags_failed_and_offline() -> None:
    states = [
        _device("a", "canary", "2", "2"),
        _device("b", "early", "1", "2", "failed"),
        _device("c", "early", "1", "1", status="offline"),
    ]
    s = summary.summarize(states, {})
    assert s.by_version == {"m=1": 1, "m=2": 1}
    assert s.by_state == {"failed": 1, "offline": 1, "serving": 1}
    assert s.unhealthy == ["b", "c"]
    assert summary.summarize(states, {"ring": "canary"}).unhealthy == []


GATES = rollout.Gates(max_failed=0, max_offline=0.34, soak_s=10, timeout_s=60)


def test_ring_waits_then_soaks_then_passes() -> None:
    waiting = [_device("a", "r", "1", "2", "pending"), _device("b", "r", "2", "2")]
    assert rollout.judge_ring(waiting, "r", "m", "2", GATES, 5, None).outcome == rollout.WAITING
    done = [
        _device("a", "r", "2", "2"),
        _device("b", "r", "2", "2"),
        _device("x", "other", "1", "1"),
    ]
    assert rollout.judge_ring(done, "r", "m", "2", GATES, 5, None).outcome == rollout.SOAKING
    passed = rollout.judge_ring(done, "r", "m", "2", GATES, 15, 10)
    assert passed.outcome == rollout.PASSED and passed.members == 2


def test_ring_gates_stop_the_rollout() -> None:
    failed = [_device("a", "r", "1", "2", "failed"), _device("b", "r", "2", "2")]
    verdict = rollout.judge_ring(failed, "r", "m", "2", GATES, 1, None)
    assert verdict.outcome == rollout.STOPPED and verdict.failed == {"a": "NaN"}
    offline = [
        _device(n, "r", "2", "2", status="offline" if n in "ab" else "online") for n in "abc"
    ]
    assert rollout.judge_ring(offline, "r", "m", "2", GATES, 1, None).outcome == rollout.STOPPED
    one_off = offline[1:]  # 1 of 2 offline is 50%, over 34%
    assert rollout.judge_ring(one_off, "r", "m", "2", GATES, 1, None).outcome == rollout.STOPPED
    slow = [_device("a", "r", "1", "2", "pending")]
    assert rollout.judge_ring(slow, "r", "m", "2", GATES, 61, None).reason.startswith(
        "not converged"
    )
    assert rollout.judge_ring([], "r", "m", "2", GATES, 0, None).outcome == rollout.STOPPED


def test_max_offline_and_plan() -> None:
    assert rollout.parse_max_offline("5%") == (0.05, True)
    assert rollout.parse_max_offline("2") == (2.0, False)
    steps = rollout.plan_rings(["canary", "all"], "m", "2", {"canary": "2", "all": "1"})
    assert [s.changes for s in steps] == [False, True]
    lines = rollout.describe_plan(steps, "m", GATES)
    assert "already at 2" in lines[0] and "m 1 -> 2" in lines[1]


def test_the_password_comes_from_its_file_and_a_missing_one_names_only_the_path(tmp_path) -> None:
    from reconciler.fleet.mqtt import make_client

    secret = tmp_path / "mqtt.password"
    secret.write_text("s3cret\n")
    client = make_client(MqttSettings("mqtt://b", username="dev", password_file=secret), "c")
    assert client.username == "dev" and client.password == "s3cret"
    with pytest.raises(MqttConfigError) as e:
        make_client(MqttSettings("mqtt://b", username="dev", password_file=tmp_path / "nope"), "c")
    assert "nope" in str(e.value)


HEAD = {"seq": 42, "hash": "ab" * 32, "time": "2026-01-02T03:04:05Z"}


def test_the_report_carries_the_journal_head_and_reads_without_one() -> None:
    snap = {"ready": True, "models": {"a": _entry("2", "2")}}
    state = report.from_snapshot(snap, "dev", {}, "1.0", journal_head=HEAD)
    body = state.to_json()
    assert body["journal_head"] == HEAD and body["apiVersion"] == "hotswap/v1"
    assert DeviceState.from_json(body) == state
    # a report from a device that kept no head (or an older release) still reads
    older = {k: v for k, v in body.items() if k != "journal_head"}
    assert DeviceState.from_json(older).journal_head is None
    assert report.from_snapshot(snap, "dev", {}, "1.0").to_json()["journal_head"] is None
    # a damaged head is left out, the rest of the report kept
    for bad in ({"seq": "42", "hash": "x"}, {"seq": True, "hash": "x"}, {"seq": 1}, "head"):
        again = DeviceState.from_json({**body, "journal_head": bad})
        assert again.journal_head is None and again.models == state.models


def test_a_moved_journal_head_is_a_change_worth_reporting() -> None:
    snap = {"ready": True, "passes": 3, "models": {"a": _entry("2", "2")}}
    before = report.from_snapshot(snap, "dev", {}, "1.0", journal_head=HEAD)
    after = report.from_snapshot(snap, "dev", {}, "1.0", journal_head={**HEAD, "seq": 43})
    assert before.comparable() != after.comparable()
    assert before.journal_head is not None and before.journal_head.seq == 42


def test_the_summary_json_carries_the_head() -> None:
    state = report.from_snapshot({"models": {}}, "dev", {}, "1.0", journal_head=HEAD)
    assert summary.summarize([state], {}).to_json()["devices"][0]["journal_head"] == HEAD
