"""ModelSlot: the swap is one reference change; in-flight requests finish on their instance,
which is released only when the last of them exits."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from runtime.serving.slot import Instance, ModelSlot, NotReady, Repository


class FakeSession:
    inputs = ()
    outputs = ()

    def __init__(self, name: str) -> None:
        self.name = name
        self.releases = 0

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.releases == 0, f"{self.name} used after release"
        return {}

    def release(self) -> None:
        self.releases += 1


def inst(version: str) -> Instance:
    return Instance("m", version, FakeSession(f"v{version}"))


def released(i: Instance) -> int:
    assert isinstance(i.session, FakeSession)
    return i.session.releases


@contextmanager
def held_request(slot: ModelSlot) -> Iterator[tuple[list[Instance], Callable[[], None]]]:
    """A request that acquires the active instance and stays inside until `finish()`, which
    returns once the request has left the slot."""
    inside, go = threading.Event(), threading.Event()
    got: list[Instance] = []
    errors: list[BaseException] = []

    def request() -> None:
        try:
            with slot.acquire() as i:
                got.append(i)
                inside.set()
                assert go.wait(10), "test never let the request finish"
                i.session.infer({})
        except BaseException as e:
            errors.append(e)
            inside.set()

    t = threading.Thread(target=request)
    t.start()
    assert inside.wait(10)

    def finish() -> None:
        go.set()
        t.join(10)
        assert not t.is_alive()
        assert not errors, errors

    try:
        yield got, finish
    finally:
        finish()


def test_acquire_on_an_empty_slot_raises_not_ready() -> None:
    slot = ModelSlot("m")
    with pytest.raises(NotReady), slot.acquire():
        pass


def test_acquire_counts_in_flight_and_drops_on_exit_even_on_error() -> None:
    slot = ModelSlot("m")
    slot.activate(a := inst("1"))
    with slot.acquire() as got:
        assert got is a and a.in_flight == 1
        with slot.acquire():
            assert a.in_flight == 2
    assert a.in_flight == 0
    with pytest.raises(ValueError), slot.acquire():
        raise ValueError("request failed")
    assert a.in_flight == 0


def test_promote_swaps_while_an_in_flight_request_finishes_on_the_old_instance() -> None:
    slot = ModelSlot("m")
    slot.activate(old := inst("1"))
    slot.set_candidate(new := inst("2"))
    with held_request(slot) as (got, finish):
        assert got == [old] and old.in_flight == 1
        assert slot.promote_candidate(keep_standby=False) is new
        assert slot.active is new and slot.candidate is None and slot.standby is None
        with slot.acquire() as now:
            assert now is new  # new requests go to the new version at once
        assert released(old) == 0  # still serving the request that started on it
        finish()
    assert released(old) == 1  # released by the request that dropped the last reference
    assert released(new) == 0
    assert old.in_flight == 0


def test_retire_with_requests_in_flight_defers_release_to_the_last_one() -> None:
    slot = ModelSlot("m")
    slot.activate(a := inst("1"))
    with held_request(slot) as (_, finish1), held_request(slot) as (_, finish2):
        assert a.in_flight == 2
        a.retire()
        assert released(a) == 0
        finish1()
        assert released(a) == 0 and a.in_flight == 1  # one request still holds it
        finish2()
        assert released(a) == 1 and a.in_flight == 0
    a.retire()  # retiring twice never releases twice
    assert released(a) == 1


def test_retire_when_idle_releases_at_once_and_only_once() -> None:
    a = inst("1")
    a.retire()
    a.retire()
    assert released(a) == 1


def test_keep_standby_true_keeps_the_old_active_loaded_as_standby() -> None:
    slot = ModelSlot("m")
    slot.activate(v1 := inst("1"))
    slot.set_candidate(v2 := inst("2"))
    slot.promote_candidate(keep_standby=True)
    assert (slot.active, slot.standby, slot.candidate) == (v2, v1, None)
    assert released(v1) == 0
    # the next promotion replaces the standby: the one before it is released
    slot.set_candidate(v3 := inst("3"))
    slot.promote_candidate(keep_standby=True)
    assert (slot.active, slot.standby) == (v3, v2)
    assert (released(v1), released(v2), released(v3)) == (1, 0, 0)


def test_keep_standby_false_releases_the_old_active_and_any_old_standby() -> None:
    slot = ModelSlot("m")
    slot.activate(v1 := inst("1"))
    slot.set_candidate(v2 := inst("2"))
    slot.promote_candidate(keep_standby=True)
    slot.set_candidate(v3 := inst("3"))
    slot.promote_candidate(keep_standby=False)
    assert (slot.active, slot.standby) == (v3, None)
    assert (released(v1), released(v2), released(v3)) == (1, 1, 0)


def test_promote_without_candidate_changes_nothing() -> None:
    slot = ModelSlot("m")
    slot.activate(v1 := inst("1"))
    with pytest.raises(RuntimeError, match="no candidate"):
        slot.promote_candidate(keep_standby=True)
    assert slot.active is v1 and released(v1) == 0


def test_drop_candidate_releases_it_and_keeps_the_active() -> None:
    slot = ModelSlot("m")
    slot.activate(v1 := inst("1"))
    slot.set_candidate(v2 := inst("2"))
    assert slot.drop_candidate() is v2
    assert slot.candidate is None and slot.active is v1
    assert (released(v1), released(v2)) == (0, 1)
    assert slot.drop_candidate() is None


def test_set_candidate_replaces_and_releases_the_previous_candidate() -> None:
    slot = ModelSlot("m")
    slot.set_candidate(c1 := inst("2"))
    slot.set_candidate(c2 := inst("3"))
    assert slot.candidate is c2
    assert (released(c1), released(c2)) == (1, 0)


def test_activate_replaces_and_releases_the_previous_active() -> None:
    slot = ModelSlot("m")
    slot.activate(v1 := inst("1"))
    slot.activate(v2 := inst("2"))
    assert slot.active is v2 and released(v1) == 1


def test_describe_reports_versions_and_in_flight() -> None:
    slot = ModelSlot("m")
    slot.activate(Instance("m", "1", FakeSession("v1"), meta={"sha256": "ab"}, healthy=True))
    with slot.acquire():
        d = slot.describe()
    assert d["active"] == {"version": "1", "healthy": True, "in_flight": 1, "sha256": "ab"}
    assert d["candidate"] is None and d["standby"] is None


def test_repository_remove_clears_every_instance() -> None:
    repo = Repository()
    slot = repo.slot("m")
    assert repo.slot("m") is slot and repo.get("m") is slot
    slot.activate(v1 := inst("1"))
    slot.set_candidate(v2 := inst("2"))
    slot.promote_candidate(keep_standby=True)
    slot.set_candidate(v3 := inst("3"))
    with held_request(slot) as (_, finish):
        repo.remove("m")
        assert repo.get("m") is None and repo.names() == []
        assert (released(v1), released(v3)) == (1, 1)
        assert released(v2) == 0  # the request in flight still holds the active instance
        finish()
    assert released(v2) == 1
    with pytest.raises(NotReady), slot.acquire():
        pass
    repo.remove("m")  # removing what is not there is fine


def test_repository_names_and_describe() -> None:
    repo = Repository()
    repo.slot("b").activate(inst("1"))
    repo.slot("a")
    assert repo.names() == ["a", "b"]
    assert repo.describe()["a"] == {"active": None, "candidate": None, "standby": None}
    assert repo.describe()["b"]["active"]["version"] == "1"


def test_many_requests_across_many_swaps_release_each_instance_exactly_once() -> None:
    slot = ModelSlot("m")
    slot.activate(inst("0"))
    made: list[Instance] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def client() -> None:
        try:
            while not stop.is_set():
                with slot.acquire() as i:
                    i.session.infer({})  # FakeSession asserts it was not released
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for n in range(1, 200):
        slot.set_candidate(c := inst(str(n)))
        made.append(c)
        slot.promote_candidate(keep_standby=n % 2 == 0)
    stop.set()
    for t in threads:
        t.join(10)
    assert not errors, errors
    live = {id(slot.active), id(slot.standby)}
    for i in made:
        assert released(i) == (0 if id(i) in live else 1), i.version
        assert i.in_flight == 0
