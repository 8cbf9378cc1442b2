"""runtime.fsutil, the primitives both planes write and hash through: after any failure the
target is whole (old or new bytes) or absent, and no temp file is left beside it."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest

from runtime import fsutil
from runtime.fsutil import (
    CHUNK,
    TEMP_SUFFIX,
    atomic_write,
    atomic_writer,
    commit_file,
    sha256_file,
    temp_path_for,
)


def entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("size", [0, 1, CHUNK, 2 * CHUNK + 7])
def test_sha256_file_equals_hashing_the_whole_file_at_once(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_atomic_write_creates_the_directory_and_sets_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "cache.bin"
    atomic_write(target, memoryview(b"engine timing"))
    assert target.read_bytes() == b"engine timing"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    atomic_write(target, b"again", mode=0o600)
    assert target.read_bytes() == b"again"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert entries(target.parent) == ["cache.bin"]


def test_a_failed_write_leaves_the_old_file_whole_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    atomic_write(target, b"old")
    with pytest.raises(OSError), atomic_writer(target) as f:
        f.write(b"half of the n")
        raise OSError(28, "No space left on device")
    assert target.read_bytes() == b"old"
    assert entries(tmp_path) == ["status.json"]


def test_a_failed_first_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        atomic_write(tmp_path / "new.bin", "not bytes")  # type: ignore[arg-type]
    assert entries(tmp_path) == []


def test_a_failure_just_before_the_rename_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "model.tensorrt"
    atomic_write(target, b"old")

    def fail(stage: str) -> None:
        if stage == "before-rename":
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(target, b"new", checkpoint=fail)
    assert target.read_bytes() == b"old"
    assert entries(tmp_path) == ["model.tensorrt"]


def test_the_rename_is_made_durable_before_after_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "status.json"
    events: list[object] = []
    real_fsync_dir = fsutil.fsync_dir

    def record_fsync_dir(path: Path) -> None:
        events.append(("fsync_dir", path, target.read_bytes()))
        real_fsync_dir(path)

    monkeypatch.setattr(fsutil, "fsync_dir", record_fsync_dir)
    atomic_write(target, b"new", checkpoint=events.append)
    assert events == ["before-rename", ("fsync_dir", tmp_path, b"new"), "after-rename"]


def test_commit_file_renames_a_temp_from_temp_path_for(tmp_path: Path) -> None:
    target = tmp_path / "k" / "model.tensorrt"
    tmp = temp_path_for(target)
    assert tmp.parent == target.parent and tmp.name.endswith(TEMP_SUFFIX)
    assert tmp.read_bytes() == b""
    tmp.write_bytes(b"built engine")
    stages: list[str] = []
    commit_file(tmp, target, checkpoint=stages.append)
    assert target.read_bytes() == b"built engine"
    assert entries(target.parent) == ["model.tensorrt"]
    assert stages == ["before-rename", "after-rename"]


def test_readers_see_one_whole_version_or_the_other(tmp_path: Path) -> None:
    target = tmp_path / "big.bin"
    versions = [bytes([i]) * (CHUNK + 1) for i in range(2)]
    atomic_write(target, versions[0])
    whole: list[bool] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            whole.append(target.read_bytes() in versions)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(20):
            atomic_write(target, versions[i % 2])
    finally:
        stop.set()
        reader.join(10)
    assert whole and all(whole)
    assert entries(tmp_path) == ["big.bin"]
