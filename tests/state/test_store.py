"""The content-addressed store and atomic writes: a blob exists only once its hash matched, and
no failure leaves a temp file or a partial blob behind."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

import pytest

from reconciler.core.errors import IntegrityError
from reconciler.state.atomic import TEMP_SUFFIX, atomic_write, atomic_writer, sweep_temp_files
from reconciler.state.store import CHUNK, Store, sha256_file

DATA = os.urandom(3 * CHUNK + 123)  # several chunks, so a failure can come mid-copy
SHA = hashlib.sha256(DATA).hexdigest()


def entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


class FailingStream:
    """Yields one chunk, then the connection drops."""

    def __init__(self, data: bytes, fail_after: int) -> None:
        self.buf = io.BytesIO(data)
        self.fail_after = fail_after
        self.reads = 0

    def read(self, n: int = -1) -> bytes:
        self.reads += 1
        if self.reads > self.fail_after:
            raise OSError("connection reset by peer")
        return self.buf.read(n)


def test_put_stream_with_the_right_sha_leaves_a_read_only_blob(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    path = store.put_stream(io.BytesIO(DATA), SHA, "classifier v1")
    assert path == store.path(SHA) and path.read_bytes() == DATA
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert entries(store.root) == [SHA]  # no temp files
    assert store.has(SHA) and store.blobs() == frozenset({SHA})
    assert sha256_file(path) == SHA


def test_put_stream_again_replaces_the_read_only_blob(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.put_stream(io.BytesIO(DATA), SHA, "classifier v1")
    store.put_stream(io.BytesIO(DATA), SHA, "classifier v1")
    assert entries(store.root) == [SHA]


def test_put_stream_with_a_wrong_sha_leaves_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    wrong = "0" * 64
    with pytest.raises(IntegrityError) as info:
        store.put_stream(io.BytesIO(DATA), wrong, "classifier v2")
    assert info.value.reason == "sha256-mismatch"
    assert info.value.terminal
    assert (
        wrong in str(info.value) and SHA in str(info.value) and "classifier v2" in str(info.value)
    )
    assert entries(store.root) == []
    assert not store.has(wrong) and store.blobs() == frozenset()


def test_a_stream_failing_mid_copy_leaves_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    stream = FailingStream(DATA, fail_after=2)
    with pytest.raises(OSError, match="connection reset"):
        store.put_stream(stream, SHA, "classifier v1")  # type: ignore[arg-type]
    assert stream.reads == 3  # it really failed mid-copy, after two chunks
    assert entries(store.root) == []


def test_blobs_lists_only_complete_hex_named_files(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.put_stream(io.BytesIO(DATA), SHA, "x")
    (store.root / f".{SHA}.abc{TEMP_SUFFIX}").write_bytes(b"partial")
    (store.root / ("A" * 64)).write_bytes(b"upper-case is not ours")
    (store.root / ("b" * 64)).mkdir()
    assert store.blobs() == frozenset({SHA})


def test_atomic_write_replaces_the_file_with_the_given_mode(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "status.json"
    atomic_write(target, b"one")
    atomic_write(target, b"two", mode=0o600)
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert entries(target.parent) == ["status.json"]


def test_atomic_writer_on_exception_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    atomic_write(target, b"old")
    with pytest.raises(RuntimeError), atomic_writer(target) as f:
        f.write(b"half of the new cont")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert entries(tmp_path) == ["status.json"]


def test_atomic_writer_on_exception_with_no_old_file_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), atomic_writer(tmp_path / "new.bin") as f:
        f.write(b"x")
        raise KeyboardInterrupt
    assert entries(tmp_path) == []


def test_sweep_temp_files_removes_only_leftovers(tmp_path: Path) -> None:
    (tmp_path / "store" / "sha256").mkdir(parents=True)
    leftovers = [
        tmp_path / f".status.json.x1{TEMP_SUFFIX}",
        tmp_path / "store" / "sha256" / f".{'a' * 64}.y2{TEMP_SUFFIX}",
    ]
    keep = [tmp_path / "status.json", tmp_path / "store" / "sha256" / ("a" * 64)]
    for p in leftovers + keep:
        p.write_bytes(b"x")
    (tmp_path / f"odd-dir{TEMP_SUFFIX}").mkdir()  # a directory is not a temp file
    removed = sweep_temp_files(tmp_path)
    assert sorted(removed) == sorted(leftovers)
    assert not any(p.exists() for p in leftovers)
    assert all(p.exists() for p in keep)
    assert (tmp_path / f"odd-dir{TEMP_SUFFIX}").is_dir()
    assert sweep_temp_files(tmp_path) == []
    assert sweep_temp_files(tmp_path / "missing") == []
