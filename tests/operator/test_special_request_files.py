"""Odd entries in `<state>/requests/` (a FIFO, symlinks, a directory, a device, a huge file) are
refused unread, journaled with what they were, and removed: the loop thread never blocks on
them and never follows a link out of the directory."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.core.desired import Desired
from reconciler.operator.channel import MAX_BYTES, requests_dir
from reconciler.operator.handler import OperatorRequests
from reconciler.ops.context import Operations
from reconciler.state import operator_records
from reconciler.state.journal import Journal
from runtime.serving.slot import Repository

STEM = "e" * 32


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[OperatorRequests]:
    journal = Journal(tmp_path / "journal.db")
    op = OperatorRequests(Operations(tmp_path, journal, Repository()), tmp_path)
    op.load()
    yield op
    journal.close()


def _fifo(entry: Path, outside: Path) -> None:
    os.mkfifo(entry)


def _symlink_to_fifo(entry: Path, outside: Path) -> None:
    os.mkfifo(outside / "pipe")
    entry.symlink_to(outside / "pipe")


def _symlink_to_file(entry: Path, outside: Path) -> None:
    (outside / "secret.json").write_text('{"id": "x"}')
    entry.symlink_to(outside / "secret.json")


def _symlink_to_dev_zero(entry: Path, outside: Path) -> None:
    entry.symlink_to("/dev/zero")


def _directory(entry: Path, outside: Path) -> None:
    entry.mkdir()
    (entry / "inside").write_text("x")


def _huge(entry: Path, outside: Path) -> None:
    with entry.open("wb") as f:  # sparse: 8 GiB claimed, nothing written
        f.truncate(8 * 1024**3)


def _device(entry: Path, outside: Path) -> None:
    try:
        os.mknod(entry, 0o600 | 0o020000, os.makedev(1, 5))  # a character device: /dev/zero's
    except (PermissionError, OSError) as e:
        pytest.skip(f"cannot make a device node here: {e}")


CASES: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "fifo": (_fifo, "fifo"),
    "symlink-to-fifo": (_symlink_to_fifo, "symlink"),
    "symlink-to-file": (_symlink_to_file, "symlink"),
    "symlink-to-dev-zero": (_symlink_to_dev_zero, "symlink"),
    "directory": (_directory, "directory"),
    "huge-file": (_huge, "oversized"),
    "device-node": (_device, "device"),
}


def _take_bounded(desk: OperatorRequests) -> None:
    """One pass's `take`, which must come back promptly whatever is in the directory."""
    done = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            desk.take(Desired({}))
        except BaseException as e:  # re-raised on the test's thread
            failure.append(e)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(10), "take() blocked on an entry of the requests directory"
    if failure:
        raise failure[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_special_entry_is_refused_unread_journaled_and_removed(
    desk: OperatorRequests, tmp_path: Path, case: str
) -> None:
    make, kind = CASES[case]
    outside = tmp_path / "outside"
    outside.mkdir()
    entry = requests_dir(desk.state_dir) / f"{STEM}.json"
    make(entry, outside)
    _take_bounded(desk)
    assert not os.path.lexists(entry)
    [rec] = [r for r in desk.journal.records() if r.step == "override"]
    refusal = operator_records.OverrideRefused.from_detail(rec.details)
    assert (rec.phase, refusal.file_kind, refusal.request_id) == ("failed", kind, STEM)
    assert "not read" in refusal.message or "larger than" in refusal.message
    # a link is removed, never what it points to
    assert sorted(p.name for p in outside.iterdir()) == sorted(
        {"symlink-to-fifo": ["pipe"], "symlink-to-file": ["secret.json"]}.get(case, [])
    )
    _take_bounded(desk)  # refused once: the next pass has nothing to say about it
    assert len([r for r in desk.journal.records() if r.step == "override"]) == 1


def test_a_file_at_the_limit_is_still_read(desk: OperatorRequests) -> None:
    entry = requests_dir(desk.state_dir) / f"{STEM}.json"
    entry.write_bytes(b"{" + b" " * (MAX_BYTES - 1))
    _take_bounded(desk)
    [rec] = [r for r in desk.journal.records() if r.step == "override"]
    assert "is not JSON" in rec.details["message"] and "file_kind" not in rec.details
