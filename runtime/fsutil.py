"""Filesystem primitives both planes share: hashing a file, writing one atomically.

The data plane writes TensorRT timing caches and hashes ONNX files for engine keys; the control
plane writes its state (store blobs, build artifacts, status) and verifies what it fetched. Both
go through here so there is one definition of "durable": the bytes go to a temp file in the
target's directory, the file is fsynced, renamed over the target, and the directory fsynced, so
a crash or power cut at any instant leaves either the old file or the new one, never a torn one.

Temp files carry `TEMP_SUFFIX`, so the control plane's startup sweep can tell leftovers of a
crashed writer from real files. The optional `checkpoint` callable is invoked with
"before-rename" and "after-rename": the control plane passes its crashpoint there (the data
plane never imports it), which is how the crash tests kill a writer at exactly those instants.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20
TEMP_SUFFIX = ".hotswap-tmp"

Checkpoint = Callable[[str], None]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read 1 MiB at a time (models are large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a rename (or create, or unlink) inside directory `path` survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path_for(path: Path) -> Path:
    """A fresh, empty temp file beside `path` (same filesystem, so the rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    return Path(name)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rename_durably(tmp: Path, path: Path, checkpoint: Checkpoint | None) -> None:
    if checkpoint is not None:
        checkpoint("before-rename")
    os.replace(tmp, path)
    fsync_dir(path.parent)
    if checkpoint is not None:
        checkpoint("after-rename")


def commit_file(tmp: Path, path: Path, checkpoint: Checkpoint | None = None) -> None:
    """Make a finished temp file durable and rename it over `path` (for writers, such as a
    backend's build, that write the temp file themselves)."""
    _fsync_file(tmp)
    _rename_durably(tmp, path, checkpoint)


@contextlib.contextmanager
def atomic_writer(
    path: Path, mode: int = 0o644, checkpoint: Checkpoint | None = None
) -> Iterator[BinaryIO]:
    """Yield a binary file; on clean exit it replaces `path` durably, on error it vanishes."""
    tmp = temp_path_for(path)
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        _rename_durably(tmp, path, checkpoint)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write(
    path: Path, data: bytes | memoryview, mode: int = 0o644, checkpoint: Checkpoint | None = None
) -> None:
    """Replace `path` with `data`: afterwards the file is whole, or (on error) as it was."""
    with atomic_writer(path, mode, checkpoint) as f:
        f.write(data)
