"""Damaged local copies, set aside: `<state>/damaged/<label>.damaged-<utc time>`.

A stored blob whose bytes no longer hash to their name, or a build artifact whose sha256 no
longer matches its `meta.json` (flash bit-rot, a torn write), is moved here by the preparer and
the build cache rather than deleted, so an operator can still look at what went wrong; the
repair then fetches or builds it again from its source. Labels say what it was
(`sha256-<hex>` for a blob, `artifact-<build key>` for a build artifact); what is still waiting
for its repair is the journal's to say (`store-damaged` without a later `refetched`).

Bounded in count (`KEEP`, the newest kept): a device whose flash rots must not fill its disk
with damaged copies. The move is a rename within the state directory (one file system); where
it cannot be made, the damaged copy is deleted, which is what matters for the repair.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
from pathlib import Path

from runtime.fsutil import fsync_dir

KEEP = 4  # damaged copies kept for a look, newest first
_MARK = ".damaged-"
_ENTRY = re.compile(r"^(?P<label>[a-z0-9]+-[0-9A-Za-z._-]+)\.damaged-(?P<at>\d{8}T\d{12}Z)$")
BLOB = "sha256"
ARTIFACT = "artifact"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


class DamagedFiles:
    def __init__(self, root: Path, keep: int = KEEP) -> None:
        self.root = root
        self.keep = keep

    def set_aside(self, path: Path, kind: str, name: str) -> Path | None:
        """Move `path` (a file or a directory) here; None when it was deleted instead."""
        if not path.exists():
            return None
        target = self.root / f"{kind}-{name}{_MARK}{_now()}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            fsync_dir(self.root)
            fsync_dir(path.parent)
        except OSError:
            _remove(path)  # the repair needs it gone; keeping it for a look is second
            return None
        self._prune()
        return target

    def entries(self) -> list[tuple[str, str, Path]]:
        """(kind, name, path) of what is kept, oldest first."""
        found = []
        with contextlib.suppress(FileNotFoundError):
            for p in self.root.iterdir():
                m = _ENTRY.match(p.name)
                if m:
                    kind, _, name = m["label"].partition("-")
                    found.append((m["at"], kind, name, p))
        return [(kind, name, p) for _, kind, name, p in sorted(found)]

    def _prune(self) -> None:
        kept = self.entries()
        for _, _, path in kept[: max(0, len(kept) - self.keep)]:
            _remove(path)
