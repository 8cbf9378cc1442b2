"""Crash recovery: kill the real daemon at every step boundary of an update, restart, check.

Each case starts from a copy of one "golden" state (a daemon that served v1 and stopped cleanly),
writes v2 desired state, and starts the daemon with `HOTSWAP_CRASHPOINT` naming one point; the
daemon SIGKILLs itself there. Then it is restarted without the crash point, and we check what
DESIGN.md section 5 promises: it serves the last promoted version before anything else, never
answers with an error once it answers at all, converges to v2, the journal verifies, the store
holds no torn or partial files, and the interrupted update ended finished (a later swap done to
v2) rather than half done. Random-moment kills from outside and a kill during steady serving
under load complete the picture.

`HOTSWAP_SLOW=1` runs more random kills; `HOTSWAP_CRASH_SEED` replays a given random sequence.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from reconciler.state.journal import Journal, Record
from reconciler.state.journal_head import head_path, read_head
from runtime.fsutil import sha256_file
from tests.support.daemon import Daemon, trust
from tests.support.kit import INPUT_SHAPE, Kit

MODEL = "classifier"
RESYNC = 1.0
POLL_S = 0.05
TIMEOUT_S = 30.0
# Requests use the binary tensor extension: a JSON-encoded 1x3x224x224 input costs the daemon
# ~10x the CPU to parse, which on a small machine slows the very recovery being watched.
_INPUT = np.full(INPUT_SHAPE, 0.1, np.float32).tobytes()
_HEADER = json.dumps(
    {
        "inputs": [
            {
                "name": "input",
                "shape": list(INPUT_SHAPE),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(_INPUT)},
            }
        ]
    }
).encode()
INFER_BYTES = _HEADER + _INPUT
INFER_HEADERS = {
    "Content-Type": "application/octet-stream",
    "Inference-Header-Content-Length": str(len(_HEADER)),
}
SLOW = os.environ.get("HOTSWAP_SLOW") == "1"

STEPS = ("fetch", "verify", "build", "warm", "health-check", "swap", "retire")
# Passes of atomic_writer/commit_file in a v2 update started from the golden v1 state:
# @1 status.json written by recovery; @2/@3 the v2 blob and a status.json written by the
# reconcile thread (they race: @3 is whichever comes second); @4 the built artifact; @5 its
# meta.json. Before a rename the temp file is left behind for the startup sweep; after it, the
# file is in place but the step that wrote it has no `done` record (an artifact without its
# meta.json must be rebuilt, one with it must not be).
ATOMIC_POINTS = (
    "atomic:before-rename@3",
    "atomic:before-rename@4",
    "atomic:after-rename@4",
    "atomic:after-rename@5",
)
CRASH_POINTS = [
    *(f"{step}:{phase}" for step in STEPS for phase in ("begin", "done")),
    "swap:flipped",
    *ATOMIC_POINTS,
    "restore:begin",
    "restore:done",
    # Between a record's commit and its journal head: the head is left one behind, which the
    # next start repairs (nothing lost: the journal is trusted and restored from).
    "journal:committed@4",
    "journal-head:before-rename@4",
]
# At these points the journal's last promoted version was still v1: recovery must restore v1.
STILL_V1 = {"swap:begin", "swap:flipped"}


# -- helpers -------------------------------------------------------------------------------------
def infer(d: Daemon) -> tuple[int | None, str]:
    """(HTTP status, model_version or error text); status None when nothing answered."""
    try:
        r = d.client.post(f"/v2/models/{MODEL}/infer", content=INFER_BYTES, headers=INFER_HEADERS)
    except httpx.HTTPError as e:
        return None, f"{type(e).__name__}: {e}"
    if r.status_code != 200:
        return r.status_code, r.text[:200]
    return 200, str(r.json().get("model_version"))


def wait_serving(d: Daemon, version: str) -> None:
    d.wait_for(lambda: infer(d) == (200, version), TIMEOUT_S, f"{MODEL} v{version} serving")


def records(state: Path) -> list[Record]:
    journal = Journal(state / "journal.db", readonly=True)
    try:
        return list(journal.records(MODEL))
    finally:
        journal.close()


def journal_end(state: Path) -> int:
    journal = Journal(state / "journal.db", readonly=True)
    try:
        last = journal.last()
        return last.seq if last else 0
    finally:
        journal.close()


def head_seq(state: Path) -> int | None:
    head = read_head(head_path(state / "journal.db"))
    return head.seq if head else None


def last_seq(state: Path) -> int:
    recs = records(state)
    return recs[-1].seq if recs else 0


def promoted_version(recs: list[Record]) -> str | None:
    """The version the journal says was last made the served one (what restore brings back)."""
    version = None
    for r in recs:
        if r.phase == "done" and r.step in ("swap", "unload"):
            version = r.to_version if r.step == "swap" else None
    return version


def wait_killed(d: Daemon, what: str) -> None:
    assert d.proc is not None
    try:
        rc = d.proc.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        d.kill9()
        raise AssertionError(
            f"daemon never reached {what} in {TIMEOUT_S}s\n{d.log_tail()}"
        ) from None
    assert rc == -signal.SIGKILL, f"expected SIGKILL at {what}, exit {rc}\n{d.log_tail()}"


def verify_journal_cli(d: Daemon) -> None:
    out = d.cli("journal", "--verify")
    assert out.returncode == 0, f"journal --verify: {out.stdout}{out.stderr}"


@dataclass
class Served:
    """What a restarted daemon answered, from its first successful inference on."""

    first: str
    seen: list[str] = field(default_factory=list)


def restart_and_watch(d: Daemon, target: str, allowed: set[str], after_target: int = 3) -> Served:
    """Start without a crash point; poll until `target` serves, checking every answer on the way.

    Before the first successful answer, only "not answering yet" is acceptable; from then on
    every answer must be a 200 from a complete version in `allowed`, and once `target` served
    it must not go back.
    """
    d.start(resync=RESYNC)
    deadline = time.monotonic() + TIMEOUT_S
    served: Served | None = None
    extra = 0
    while True:
        assert time.monotonic() < deadline, (
            f"no convergence to v{target} in {TIMEOUT_S}s; answers {served}\n{d.log_tail()}"
        )
        assert d.alive(), f"daemon exited with {d.proc.returncode if d.proc else None}\n{d.log_tail()}"  # fmt: skip
        status, version = infer(d)
        if served is None:
            if status == 200:
                served = Served(first=version, seen=[version])
                assert version in allowed, f"first answer after restart: v{version}, not {allowed}"
        else:
            assert status == 200, (
                f"error after serving had started ({status}): {version}; before: {served.seen}\n"
                f"{d.log_tail()}"
            )
            assert version in allowed, f"served v{version}, not in {allowed}: {served.seen}"
            if target in served.seen:
                assert version == target, f"went back from v{target}: {[*served.seen, version]}"
            served.seen.append(version)
        if served is not None and target in served.seen:
            extra += 1
            if extra > after_target:
                return served
        time.sleep(POLL_S)


def stop_cleanly(d: Daemon) -> None:
    """SIGTERM: the daemon stops serving, then its controller, closes the journal, exits 0."""
    d.stop()
    assert d.proc is not None and d.proc.returncode == 0, (
        f"SIGTERM stop exited {d.proc.returncode if d.proc else None}\n{d.log_tail()}"
    )
    assert '"event": "daemon.stopped"' in d.log_tail(5), d.log_tail()


def partial_files(state: Path) -> list[str]:
    """Files a writer had not finished: atomic-write temps and partial downloads of blobs."""
    found = [*state.rglob("*.hotswap-tmp"), *(state / "store").rglob("*.part")]
    return sorted(str(p.relative_to(state)) for p in found)


def check_store(state: Path) -> None:
    """No partial files, every blob hashes to its name, every finished artifact matches its meta."""
    leftovers = partial_files(state)
    assert not leftovers, f"partial files left after recovery: {leftovers}"
    blobs = state / "store" / "sha256"
    for blob in blobs.iterdir():
        assert blob.is_file(), f"{blob} is not a file"
        assert sha256_file(blob) == blob.name, f"store blob {blob.name} does not hash to its name"
    for key_dir in (state / "artifacts").iterdir():
        meta_path = key_dir / "meta.json"
        if not meta_path.is_file():
            continue
        meta = json.loads(meta_path.read_text())
        artifact = key_dir / meta["artifact"]
        assert artifact.is_file(), f"{key_dir.name}: meta.json names a missing artifact"
        assert sha256_file(artifact) == meta["sha256"], f"{key_dir.name}: artifact is torn"


def check_journal(state: Path, crash_seq: int, target: str) -> tuple[str | None, list[Record]]:
    """The interrupted update ended finished, recovery restored first; returns (restored, after)."""
    recs = records(state)
    before = [r for r in recs if r.seq <= crash_seq]
    after = [r for r in recs if r.seq > crash_seq]
    promoted = promoted_version(before)
    assert after, "the restarted daemon journaled nothing"
    if promoted is not None:
        # Recovery serves the last promoted version before anything else.
        assert (after[0].step, after[0].phase) == ("restore", "begin"), [str(r) for r in after[:3]]
        restored = [r for r in after if r.step == "restore" and r.phase == "done"]
        assert restored and restored[0].to_version == promoted, (
            f"restart should restore v{promoted}: {[(r.step, r.phase, r.to_version) for r in after]}"
        )
    failed = [(r.seq, r.step, r.details) for r in after if r.phase == "failed"]
    assert not failed, f"recovery went through failures: {failed}"
    for step in {r.step for r in after}:
        begins = sum(1 for r in after if r.step == step and r.phase == "begin")
        ends = sum(1 for r in after if r.step == step and r.phase in ("done", "failed"))
        assert begins == ends, f"{step}: {begins} begin vs {ends} done/failed after recovery"
    swaps = [r for r in recs if r.step == "swap" and r.phase == "done"]
    assert swaps and swaps[-1].to_version == target, (
        f"last swap done is {swaps[-1].to_version if swaps else None}, expected v{target}"
    )
    assert promoted_version(recs) == target
    return promoted, after


def check_recovered(d: Daemon, crash_seq: int, target: str, served: Served) -> str | None:
    """(c)-(e) on a stopped daemon; returns the version the journal says recovery restored."""
    stop_cleanly(d)
    verify_journal_cli(d)
    check_store(d.state)
    restored, _ = check_journal(d.state, crash_seq, target)
    assert served.first in {restored, target}, (
        f"first answer v{served.first}: neither restored v{restored} nor target v{target}"
    )
    return restored


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def golden(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """desired/ + state/ of a daemon that served v1 and was stopped cleanly."""
    root = tmp_path_factory.mktemp("crash-golden")
    d = Daemon(root / "desired", root / "state", root.parent / "crash-golden.log")
    d.desired.mkdir(parents=True)
    trust(d.state, kit)
    kit.write(d.desired, "1")
    try:
        d.start(resync=RESYNC)
        wait_serving(d, "1")
        d.wait_for(lambda: d.client.get("/v2/health/ready").status_code == 200, what="ready")
    finally:
        d.stop()
    assert d.proc is not None and d.proc.returncode == 0, d.log_tail()
    assert promoted_version(records(d.state)) == "1"
    return root


@pytest.fixture
def from_golden(golden: Path, tmp_path: Path, daemon: Callable[..., Daemon]) -> Iterator[Daemon]:
    case = tmp_path / "case"
    shutil.copytree(golden, case)
    yield daemon(case / "desired", case / "state")


# -- 1. every named crash point ------------------------------------------------------------------
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_point_recovers(point: str, kit: Kit, from_golden: Daemon) -> None:
    d = from_golden
    kit.write(d.desired, "2")
    d.start(env={"HOTSWAP_CRASHPOINT": point}, resync=RESYNC)
    wait_killed(d, point)
    crash_seq = last_seq(d.state)
    if point.startswith("atomic:before-rename"):
        torn = partial_files(d.state)
        assert torn, f"{point}: no temp file left by the crash"
        print(f"{point}: crashed with {torn} unrenamed")
    if point.startswith("journal"):
        assert head_seq(d.state) == journal_end(d.state) - 1, f"{point}: head not one behind"

    served = restart_and_watch(d, target="2", allowed={"1", "2"})
    restored = check_recovered(d, crash_seq, "2", served)
    if point.split("@")[0] in STILL_V1:
        # The flip may have happened in memory, but the journal had not recorded it: the device
        # comes back on v1 and then finishes the update.
        assert restored == "1", f"{point}: recovery restored v{restored}, expected v1"
        if served.first != "1":
            print(f"{point}: v2 already swapped in before the first poll (restore v1 journaled)")
    if point.startswith("restore:"):
        assert restored == "1"


@pytest.mark.parametrize("point", ["swap:flipped@2", "swap:done@2"])
def test_crash_swapping_back_to_standby(point: str, kit: Kit, from_golden: Daemon) -> None:
    """Going back to the warm standby is one pointer change; a crash around it recovers too."""
    d = from_golden
    kit.write(d.desired, "2")
    d.start(env={"HOTSWAP_CRASHPOINT": point}, resync=RESYNC)  # the v1 -> v2 swap is pass 1
    wait_serving(d, "2")
    since = last_seq(d.state)
    kit.write(d.desired, "1")
    wait_killed(d, point)
    recs = records(d.state)
    crash_seq = recs[-1].seq
    back = [(r.step, r.phase) for r in recs if r.seq > since and r.to_version == "1"]
    assert ("warm", "begin") not in back, f"expected a swap straight back to the standby: {back}"

    served = restart_and_watch(d, target="1", allowed={"1", "2"})
    restored = check_recovered(d, crash_seq, "1", served)
    # Until the swap's `done` record, the journal still says v2 is the promoted version.
    assert restored == ("1" if point.startswith("swap:done") else "2"), point


# -- 2. kills at random moments of an update -----------------------------------------------------
def journal_span(recs: list[Record]) -> float:
    """Seconds from the first to the last of these journal records."""
    started, ended = (dt.datetime.fromisoformat(r.time) for r in (recs[0], recs[-1]))
    return (ended - started).total_seconds()


def wait_update_begins(d: Daemon, since: int, version: str) -> None:
    """Return within ~5 ms of the first journal record of the update to `version`."""
    db = sqlite3.connect(f"file:{d.state / 'journal.db'}?mode=ro", uri=True)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        query = "SELECT 1 FROM records WHERE seq > ? AND model = ? AND to_version = ? LIMIT 1"
        while db.execute(query, (since, MODEL, version)).fetchone() is None:
            assert time.monotonic() < deadline, f"the update to v{version} never began"
            assert d.alive(), d.log_tail()
            time.sleep(0.005)
    finally:
        db.close()


def where_killed(recs: list[Record], target: str) -> str:
    """Which part of the update to `target` a kill interrupted, from the journal."""
    last = recs[-1] if recs else None
    if last is None or last.to_version != target:
        return "before the update began"
    if (last.step, last.phase) == ("retire", "done"):
        return "after the update finished"
    return f"after {last.step}:{last.phase}"


@pytest.mark.slow
def test_random_kills_during_update(kit: Kit, from_golden: Daemon) -> None:
    seed = int(os.environ.get("HOTSWAP_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    rng = random.Random(seed)
    n = 15 if SLOW else 3
    fractions = [rng.random() for _ in range(n)]
    d = from_golden
    # An update takes ~0.1 s from its first journal record to its last, less than the watcher
    # may take to notice the change: so each kill is timed from the update's first `begin`
    # record, at a random point of the span the golden v1 install took on this machine. Each
    # kill interrupts a freshly started daemon, which holds no warm standby: every update loads
    # and proves its version (a swap back to a standby is one pointer change, covered above).
    window = journal_span(records(d.state))
    delays = [round(f * window, 3) for f in fractions]
    print(f"random kills: HOTSWAP_CRASH_SEED={seed} span={window:.3f}s delays={delays}")
    d.start(resync=RESYNC)
    wait_serving(d, "1")
    current = "1"
    landed: list[str] = []
    for i, delay in enumerate(delays):
        where = f"kill {i + 1}/{n} at +{delay}s into the update (HOTSWAP_CRASH_SEED={seed})"
        target = "2" if current == "1" else "1"
        since = last_seq(d.state)
        kit.write(d.desired, target)
        wait_update_begins(d, since, target)
        time.sleep(delay)
        assert d.alive(), f"{where}: daemon died on its own\n{d.log_tail()}"
        d.kill9()
        assert d.proc is not None and d.proc.returncode == -signal.SIGKILL
        recs = records(d.state)
        crash_seq = recs[-1].seq
        landed.append(where_killed(recs, target))
        verify_journal_cli(d)  # a kill -9 mid-append leaves committed records only

        served = restart_and_watch(d, target=target, allowed={current, target})
        try:
            check_recovered(d, crash_seq, target, served)
        except AssertionError as e:
            raise AssertionError(f"{where}, {landed[-1]}: {e}") from e
        current = target
        if i + 1 < n:
            d.start(resync=RESYNC)
            wait_serving(d, current)
    print(
        "random kills landed: "
        + "; ".join(f"+{t}s {w}" for t, w in zip(delays, landed, strict=True))
    )


# -- 3. kill during steady serving under load ----------------------------------------------------
def test_kill_under_load_serves_promoted_version(from_golden: Daemon) -> None:
    d = from_golden
    d.start(resync=RESYNC)
    wait_serving(d, "1")
    answers: list[tuple[float, int | None, str]] = []
    stop = threading.Event()

    def client() -> None:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            status, version = infer(d)  # d.client is replaced when the daemon restarts
            answers.append((time.monotonic(), status, version))
            stop.wait(0.005 if status == 200 else 0.02)

    thread = threading.Thread(target=client, name="load", daemon=True)
    thread.start()
    try:
        d.wait_for(lambda: sum(1 for a in answers if a[1] == 200) >= 5, what="load running")
        kill_sent = time.monotonic()
        d.kill9()
        killed_at = time.monotonic()
        assert d.proc is not None and d.proc.returncode == -signal.SIGKILL
        verify_journal_cli(d)  # torn tail is not corruption: committed records verify
        crash_seq = last_seq(d.state)
        d.start(resync=RESYNC)
        d.wait_for(
            lambda: sum(1 for t, s, _ in answers if t > killed_at and s == 200) >= 10,
            what="load answered after restart",
        )
    finally:
        stop.set()
        thread.join(timeout=15)
    before = [(s, v) for t, s, v in answers if t < kill_sent]
    assert before and all(a == (200, "1") for a in before), sorted(set(before))
    after = [(s, v) for t, s, v in answers if t > killed_at]
    first_ok = next(i for i, (s, _) in enumerate(after) if s == 200)
    assert after[first_ok] == (200, "1"), f"first answer after restart: {after[first_ok]}"
    assert all(a == (200, "1") for a in after[first_ok:]), sorted(set(after[first_ok:]))
    stop_cleanly(d)
    verify_journal_cli(d)
    check_store(d.state)
    recs = [r for r in records(d.state) if r.seq > crash_seq]
    assert [(r.step, r.phase, r.to_version) for r in recs[:2]] == [
        ("restore", "begin", "1"),
        ("restore", "done", "1"),
    ]
    assert not [r for r in recs if r.phase == "failed"]
