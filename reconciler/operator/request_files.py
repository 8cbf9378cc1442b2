"""Reading one entry of `<state>/requests/` without trusting what it is.

The channel (reconciler.operator.channel) reads request files on the loop thread, so a read that
blocks stops the daemon: a FIFO (or a symlink to one) never gives EOF, a symlink to /dev/zero
never ends, a huge file fills memory. Only a regular file, not followed through a link, no
larger than the limit, is read: the entry is looked at with lstat (nothing is opened that is not
a regular file: opening some devices has effects), then opened with O_NOFOLLOW | O_NONBLOCK and
checked again with fstat (the entry may have been swapped between the two). Anything else is a
`NotARequest` that the handler journals as refused, and `discard` removes the entry itself
(never what a link points to).
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class NotARequest:
    """Why an entry was not read: `kind` names what it is ("symlink", "fifo", "directory",
    "device", "socket", "oversized", "unreadable")."""

    kind: str
    message: str


def kind_of(mode: int) -> str:
    """What a non-regular entry is, in one word for the journal."""
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "regular" if stat.S_ISREG(mode) else "special"


def _refusal(path: Path, st: os.stat_result, limit: int) -> NotARequest | None:
    kind = kind_of(st.st_mode)
    if kind != "regular":
        return NotARequest(kind, f"{path.name} is a {kind}, not a regular file; not read")
    if st.st_size > limit:
        return NotARequest("oversized", f"{path.name} is larger than {limit} bytes; not read")
    return None


def read_bounded(path: Path, limit: int) -> bytes | NotARequest | None:
    """The bytes of `path` if it is a regular file of at most `limit` bytes; a `NotARequest`
    otherwise; None if the entry is gone (removed meanwhile: nothing to do)."""
    try:
        refused = _refusal(path, os.lstat(path), limit)
        if refused is not None:
            return refused
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as e:  # ELOOP: it became a symlink after the lstat
        return NotARequest("unreadable", f"cannot read {path.name}: {e.strerror or e}")
    try:
        refused = _refusal(path, os.fstat(fd), limit)
        if refused is not None:
            return refused
        chunks: list[bytes] = []
        size = 0
        while size <= limit:  # the file may grow after the fstat
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        return NotARequest("unreadable", f"cannot read {path.name}: {e.strerror or e}")
    finally:
        os.close(fd)
    if size > limit:
        return NotARequest("oversized", f"{path.name} is larger than {limit} bytes")
    return b"".join(chunks)


def discard(path: Path) -> bool:
    """Remove the entry itself (a link, not its target; a directory with what is in it);
    False if it could not be removed."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError:
        return not os.path.lexists(path)
    return True
