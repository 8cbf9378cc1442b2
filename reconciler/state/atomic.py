"""The one way hotswap writes state to disk: temp file in the same directory, fsync, rename, fsync dir.

Every writer of state (store blobs, build artifacts, status snapshot, example models) goes through
here, so a crash or power cut at any instant leaves either the old file or the new one, never a
torn one. Temp files carry a fixed suffix so `sweep_temp_files` can remove leftovers of a crashed
attempt at startup.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from reconciler.state.crashpoint import crashpoint

TEMP_SUFFIX = ".hotswap-tmp"


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a binary file; on clean exit it replaces `path` durably, on error it vanishes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        crashpoint("atomic:before-rename")
        os.replace(tmp, path)
        fsync_dir(path.parent)
        crashpoint("atomic:after-rename")
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    with atomic_writer(path, mode) as f:
        f.write(data)


def sweep_temp_files(root: Path) -> list[Path]:
    """Remove temp files a crashed writer left under `root`; returns what was removed."""
    removed: list[Path] = []
    if not root.exists():
        return removed
    for tmp in root.rglob(f"*{TEMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            if tmp.is_dir():
                continue
            tmp.unlink()
            removed.append(tmp)
    return removed


def temp_path_for(path: Path) -> Path:
    """A temp name beside `path` for writers that cannot write through a file object (backends)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    return Path(name)


def commit_file(tmp: Path, path: Path) -> None:
    """Make a finished temp file durable and rename it over `path`."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    crashpoint("atomic:before-rename")
    os.replace(tmp, path)
    fsync_dir(path.parent)
    crashpoint("atomic:after-rename")
