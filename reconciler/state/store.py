"""The content-addressed store: `store/sha256/<hex>`, a blob present only once its hash matched.

Every way bytes enter the store (a local copy, an HTTP download, a resumed download) goes through
one `Partial`: `store/partial/<hex>.part`, appended to while a running sha256 is kept, renamed
into `sha256/<hex>` (read-only, then the directory fsynced) only once the hash equals the pinned
one. So "present" means "verified" (what `Fetch.done` relies on), and a crash mid-download leaves
only a `.part` outside `sha256/`, never a visible blob.

`.part` files are deliberately not `*.hotswap-tmp` names: the startup sweep leaves them alone, so
a download dropped by the network or by a restart resumes where it stopped (HTTP Range). The
fetcher deletes a `.part` whose bytes cannot be trusted (hash mismatch, size cap, a failed
write); `clean_partials` removes ones nobody wants any more.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, BinaryIO

from reconciler.core.errors import IntegrityError
from reconciler.state.atomic import fsync_dir
from reconciler.state.crashpoint import crashpoint

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20
PART_SUFFIX = ".part"
PARTIAL_MAX_AGE_S = 7 * 24 * 3600.0

# One download per blob at a time, across every Store object of this process (two models may
# pin the same bytes). One daemon per state directory (the state lock) covers other processes.
_part_locks: dict[Path, threading.Lock] = {}
_part_locks_guard = threading.Lock()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _write(f: IO[bytes], data: bytes) -> None:
    """Write all of `data` to an unbuffered file (the one place tests inject ENOSPC)."""
    view = memoryview(data)
    while view:
        n = f.write(view)
        if n is None:  # pragma: no cover - only for non-blocking files
            continue
        view = view[n:]


class Partial:
    """A blob being written: `partial/<hex>.part` plus the running sha256 of what it holds.

    Opening an existing `.part` re-hashes it to seed the hash, so a download resumes after a
    restart as after a drop. `commit` makes it the blob; `discard` deletes it; leaving the
    context without either keeps it for the next attempt.
    """

    def __init__(self, path: Path, dest: Path) -> None:
        self.path = path
        self.dest = dest
        self.size = 0
        self._h = hashlib.sha256()
        self._f: IO[bytes] | None = None

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):  # read-only if a crash came before rename
            os.chmod(self.path, 0o644)
        self._f = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed by close()
        with open(self.path, "rb") as existing:
            for chunk in iter(lambda: existing.read(CHUNK), b""):
                self._h.update(chunk)
                self.size += len(chunk)

    def write(self, data: bytes) -> None:
        assert self._f is not None
        _write(self._f, data)
        self._h.update(data)
        self.size += len(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()

    def restart(self) -> None:
        """Drop what is there and start from byte 0 (server ignored Range, stale prefix)."""
        assert self._f is not None
        self._f.truncate(0)
        self._h = hashlib.sha256()
        self.size = 0

    def commit(self) -> Path:
        """fsync, make read-only, rename into `sha256/<hex>`, fsync the directory."""
        assert self._f is not None
        os.fsync(self._f.fileno())
        self.close()
        os.chmod(self.path, 0o444)
        crashpoint("atomic:before-rename")
        os.replace(self.path, self.dest)
        fsync_dir(self.dest.parent)
        crashpoint("atomic:after-rename")
        return self.dest

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._f is not None:
            with contextlib.suppress(OSError):
                self._f.close()
            self._f = None


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root / "sha256"
        self.partial_dir = root / "partial"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def blobs(self) -> frozenset[str]:
        return frozenset(
            p.name for p in self.root.iterdir() if _HEX64.match(p.name) and p.is_file()
        )

    def partial_path(self, sha256: str) -> Path:
        return self.partial_dir / f"{sha256}{PART_SUFFIX}"

    @contextlib.contextmanager
    def partial(self, sha256: str) -> Iterator[Partial]:
        """Exclusive access to the `.part` of `sha256`, opened (and re-hashed) for appending."""
        if not _HEX64.match(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        path = self.partial_path(sha256)
        with _part_locks_guard:
            lock = _part_locks.setdefault(path, threading.Lock())
        with lock:
            part = Partial(path, self.path(sha256))
            try:
                part._open()
                yield part
            finally:
                part.close()
                if part.size == 0:  # nothing to resume from: leave no empty .part behind
                    path.unlink(missing_ok=True)

    def partials(self) -> dict[str, int]:
        """Downloads in progress or interrupted: sha256 -> bytes so far."""
        out: dict[str, int] = {}
        if not self.partial_dir.is_dir():
            return out
        for p in self.partial_dir.iterdir():
            sha = p.name.removesuffix(PART_SUFFIX)
            if p.name.endswith(PART_SUFFIX) and _HEX64.match(sha) and p.is_file():
                out[sha] = p.stat().st_size
        return out

    def clean_partials(
        self,
        keep: Iterable[str] = (),
        max_age_s: float = PARTIAL_MAX_AGE_S,
        now: float | None = None,
    ) -> list[str]:
        """Remove `.part` files not in `keep` that nobody has written to for `max_age_s`."""
        keep_set = set(keep)
        now = time.time() if now is None else now
        removed = []
        for sha in self.partials():
            if sha in keep_set:
                continue
            path = self.partial_path(sha)
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime >= max_age_s:
                    path.unlink()
                    removed.append(sha)
        return sorted(removed)

    def put_stream(self, stream: BinaryIO, sha256: str, what: str) -> Path:
        """Copy `stream` into the store; the blob appears only if its hash equals `sha256`."""
        with self.partial(sha256) as part:
            try:
                part.restart()
                for chunk in iter(lambda: stream.read(CHUNK), b""):
                    part.write(chunk)
                actual = part.hexdigest()
                if actual != sha256:
                    raise IntegrityError(
                        f"sha256 mismatch for {what}: desired state pins {sha256}, the file hashes to {actual}",
                        reason="sha256-mismatch",
                    )
                return part.commit()
            except BaseException:
                part.discard()
                raise
