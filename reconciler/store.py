"""The content-addressed store: `store/sha256/<hex>`, a blob present only once its hash matched.

Blobs are written through `atomic_writer` while hashing, and renamed into place only after the
running sha256 equals the pinned one, so "present" means "verified" (what `Fetch.done` relies
on) and a crash mid-copy leaves only a temp file for the startup sweep.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from reconciler.atomic import atomic_writer
from reconciler.errors import IntegrityError

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root / "sha256"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def blobs(self) -> frozenset[str]:
        return frozenset(
            p.name for p in self.root.iterdir() if _HEX64.match(p.name) and p.is_file()
        )

    def put_stream(self, stream: BinaryIO, sha256: str, what: str) -> Path:
        """Copy `stream` into the store; the blob appears only if its hash equals `sha256`."""
        dest = self.path(sha256)
        with atomic_writer(dest, mode=0o444) as out:
            h = hashlib.sha256()
            for chunk in iter(lambda: stream.read(CHUNK), b""):
                h.update(chunk)
                out.write(chunk)
            actual = h.hexdigest()
            if actual != sha256:
                raise IntegrityError(
                    f"sha256 mismatch for {what}: desired state pins {sha256}, the file hashes to {actual}",
                    reason="sha256-mismatch",
                )
        return dest

    def remove_except(self, keep: Iterable[str]) -> list[str]:
        keep_set = set(keep)
        removed = []
        for sha in self.blobs() - keep_set:
            self.path(sha).unlink(missing_ok=True)
            removed.append(sha)
        return sorted(removed)
