"""Local sources: plain paths and `file://` URLs, read in chunks from an offset.

`transports.fetcher_for` picks `FileFetcher` whenever `local_path` recognises the source;
`download` uses `local_path` to resolve a manifest next to a local model. A local copy resumes
like a download (the file is seeked to the `.part`'s size), so the loop has one behaviour for
every source. Missing and unreadable files are transient (the path may appear later); a
directory is invalid input.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import urlparse

from reconciler.core.errors import InvalidInput, TransientError
from reconciler.fetch.stream import Download, FetchDropped

CHUNK = 256 * 1024


def local_path(source: str) -> Path | None:
    parsed = urlparse(source)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme in ("", None) or len(parsed.scheme) == 1:  # plain path (or a Windows drive)
        return Path(source)
    return None


class FileFetcher:
    """Plain paths and `file://` URLs; seeks to the offset, so a local copy resumes too."""

    def open(self, url: str, offset: int = 0) -> contextlib.AbstractContextManager[Download]:
        return self._open(url, offset)

    @contextlib.contextmanager
    def _open(self, url: str, offset: int) -> Iterator[Download]:
        path = local_path(url) or Path(url)
        try:
            f = path.open("rb")
        except FileNotFoundError as e:
            raise TransientError(f"{path} does not exist", reason="source-missing") from e
        except IsADirectoryError as e:
            raise InvalidInput(f"{path} is a directory", reason="source-invalid") from e
        except PermissionError as e:
            raise TransientError(f"{path}: permission denied", reason="source-unreadable") from e
        except OSError as e:
            raise FetchDropped(f"{path}: {e.strerror or e}") from e
        with f:
            try:
                st = os.fstat(f.fileno())
            except OSError as e:
                raise FetchDropped(f"{path}: {e.strerror or e}") from e
            total = st.st_size if stat.S_ISREG(st.st_mode) else None  # a pipe, a device: no size
            start = offset if total is not None and 0 < offset <= total else 0
            if start:
                f.seek(start)
            yield Download(start, total, _file_chunks(f, path))


def _file_chunks(f: IO[bytes], path: Path) -> Iterator[bytes]:
    while True:
        try:
            chunk = f.read(CHUNK)
        except OSError as e:
            raise FetchDropped(f"reading {path}: {e.strerror or e}") from e
        if not chunk:
            return
        yield chunk
