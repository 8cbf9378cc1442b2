"""The one way hotswap writes state to disk: temp file in the same directory, fsync, rename, fsync dir.

Every writer of state (store blobs, build artifacts, status snapshot, example models) goes through
here, so a crash or power cut at any instant leaves either the old file or the new one, never a
torn one. The primitives live in `runtime.fsutil`, shared with the data plane; this module adds
what only the control plane has: its crashpoints just before and after each rename (which the
crash tests kill the daemon at), and `sweep_temp_files`, which removes leftovers of a crashed
attempt at startup (temp files carry the fixed `TEMP_SUFFIX`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from reconciler.state.crashpoint import crashpoint
from runtime import fsutil
from runtime.fsutil import TEMP_SUFFIX, fsync_dir, temp_path_for

__all__ = [
    "TEMP_SUFFIX",
    "atomic_write",
    "atomic_writer",
    "commit_file",
    "fsync_dir",
    "sweep_temp_files",
    "temp_path_for",
]


def _crashpoint(stage: str) -> None:
    crashpoint(f"atomic:{stage}")


@contextlib.contextmanager
def atomic_writer(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a binary file; on clean exit it replaces `path` durably, on error it vanishes."""
    with fsutil.atomic_writer(path, mode, checkpoint=_crashpoint) as f:
        yield f


def atomic_write(path: Path, data: bytes, mode: int = 0o644, crashpoints: str = "atomic") -> None:
    """`crashpoints`: the prefix of this write's crash points; a writer that runs with every
    journal append (the journal's head) has its own, so the `atomic:` counts stay the store's."""
    if crashpoints == "atomic":
        fsutil.atomic_write(path, data, mode, checkpoint=_crashpoint)
        return
    fsutil.atomic_write(path, data, mode, checkpoint=lambda s: crashpoint(f"{crashpoints}:{s}"))


def commit_file(tmp: Path, path: Path) -> None:
    """Make a finished temp file (from `temp_path_for`) durable and rename it over `path`."""
    fsutil.commit_file(tmp, path, checkpoint=_crashpoint)


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
