"""How model bytes travel: a `Fetcher` per scheme, and the one download loop into the store.

`fetch.py` (the Fetch step, and the manifest reader) calls `fetch_into_store` / `fetch_bytes`;
they pick a `Fetcher` by scheme: `FileFetcher` for paths and `file://`, `HttpFetcher` (httpx)
for `https://` and, only where the device trust policy says `allow_http`, `http://`. A fetcher
only opens a byte stream at an offset; everything that must hold whatever the transport —
running sha256, size cap, resume from `store/partial/<hex>.part`, retries with backoff and
jitter, atomic rename, progress — lives once, in `fetch_into_store`. Tests swap the transport
for a fake registry on 127.0.0.1 (tests/support/fakeregistry.py).

Failures, by what happens next (reason strings are stable):
  connection drop, timeout, 5xx  -> retried here (the .part kept, next request resumes with
                                     Range); after the last retry TransientError fetch-failed
  404/403/401/410                -> TransientError source-missing (the registry may get it later)
  sha256 differs                 -> IntegrityError sha256-mismatch (.part deleted; terminal)
  more bytes than the cap        -> IntegrityError size-exceeded (.part deleted; terminal)
  ENOSPC/EDQUOT writing          -> TransientError disk-full (.part deleted to free the space)
  http:// without opt-in         -> InvalidInput http-not-allowed; other schemes source-unsupported
  redirect https -> http         -> TransientError redirect-refused
"""

from __future__ import annotations

import contextlib
import errno
import importlib.metadata
import os
import random
import re
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol, TextIO, TypeVar
from urllib.parse import urlparse

import httpx

from reconciler.core.errors import HotswapError, IntegrityError, InvalidInput, TransientError
from reconciler.state.store import Partial, Store

Progress = Callable[[int, "int | None"], None]
T = TypeVar("T")

CHUNK = 256 * 1024
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=30.0, write=30.0, pool=10.0)
PROGRESS_EVERY_S = 0.25
_MISSING = (401, 403, 404, 410)
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")

try:
    USER_AGENT = f"hotswap/{importlib.metadata.version('hotswap')}"
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    USER_AGENT = "hotswap/dev"


class FetchDropped(TransientError):
    """The transfer broke off (drop, timeout, 5xx): worth retrying now, resuming the .part."""

    reason = "fetch-failed"


@dataclass
class Download:
    """An open source: `chunks` are the resource's bytes from `start` (the asked offset or 0)."""

    start: int
    total: int | None  # size of the whole resource, when the source says
    chunks: Iterator[bytes]


class Fetcher(Protocol):
    def open(self, url: str, offset: int = 0) -> contextlib.AbstractContextManager[Download]:
        """Open `url` at `offset` (or at 0 if the source cannot seek); raise HotswapErrors."""
        ...


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


def check_redirect(from_url: str, to_url: str, allow_http: bool) -> None:
    """Follow a redirect only to http(s), never from https down to http, http only if allowed."""
    src, dst = urlparse(from_url).scheme.lower(), urlparse(to_url).scheme.lower()
    why = None
    if dst not in ("http", "https"):
        why = f"to a {dst or 'relative'}: URL"
    elif src == "https" and dst == "http":
        why = "from https down to plain http"
    elif dst == "http" and not allow_http:
        why = "to plain http, which the device trust policy does not allow"
    if why:
        raise TransientError(
            f"refusing redirect from {from_url} to {to_url} ({why})", reason="redirect-refused"
        )


class HttpFetcher:
    """httpx over HTTP/1.1: identity encoding (the bytes the sha256 pins), Range for resume."""

    def __init__(
        self,
        allow_http: bool = False,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.allow_http = allow_http
        self.client = httpx.Client(
            timeout=timeout,
            follow_redirects=True,
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            event_hooks={"response": [self._on_response]},
            transport=transport,
        )

    def _on_response(self, response: httpx.Response) -> None:
        if response.has_redirect_location:
            target = response.url.join(response.headers["location"])
            check_redirect(str(response.url), str(target), self.allow_http)

    def close(self) -> None:
        self.client.close()

    def open(self, url: str, offset: int = 0) -> contextlib.AbstractContextManager[Download]:
        return self._open(url, offset)

    @contextlib.contextmanager
    def _open(self, url: str, offset: int) -> Iterator[Download]:
        response, start, total = self._get(url, offset)
        try:
            yield Download(start, total, _http_chunks(response))
        finally:
            response.close()

    def _get(self, url: str, offset: int) -> tuple[httpx.Response, int, int | None]:
        for _ in range(3):  # a 416 or a mismatched 206 is asked once more, from byte 0
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            try:
                response = self.client.send(
                    self.client.build_request("GET", url, headers=headers), stream=True
                )
            except httpx.TooManyRedirects as e:
                raise TransientError(f"{url}: too many redirects", reason="fetch-failed") from e
            except httpx.InvalidURL as e:
                raise InvalidInput(f"{url}: invalid URL: {e}", reason="source-invalid") from e
            except httpx.TransportError as e:
                raise FetchDropped(f"{url}: {_describe(e)}") from e
            code, where = response.status_code, str(response.url)
            if code == 200:
                length = response.headers.get("content-length")
                return response, 0, int(length) if length and length.isdigit() else None
            if code == 206 and offset:
                m = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
                if m and int(m.group(1)) == offset:
                    return response, offset, None if m.group(3) == "*" else int(m.group(3))
            response.close()
            if code in (206, 416):  # our .part does not fit what the server has: start over
                offset = 0
                continue
            if code in _MISSING:
                raise TransientError(
                    f"{where}: HTTP {code} {response.reason_phrase}", reason="source-missing"
                )
            if code in (408, 429) or code >= 500:
                raise FetchDropped(f"{where}: HTTP {code} {response.reason_phrase}")
            raise TransientError(
                f"{where}: unexpected HTTP {code} {response.reason_phrase}", reason="fetch-failed"
            )
        raise FetchDropped(f"{url}: the server does not answer Range requests consistently")


def _http_chunks(response: httpx.Response) -> Iterator[bytes]:
    try:
        # No chunk_size: httpx would hold back a partial chunk, and lose it when the line drops.
        yield from response.iter_raw()
    except httpx.TransportError as e:
        raise FetchDropped(f"{response.url}: {_describe(e)}") from e


def _describe(e: httpx.TransportError) -> str:
    if isinstance(e, httpx.TimeoutException):
        kind = type(e).__name__.replace("Timeout", "").lower() or "request"
        return f"{kind} timed out ({e or 'no answer in time'})"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def check_source(url: str, allow_http: bool) -> None:
    """Refuse http:// without the trust policy's opt-in, and any scheme we do not fetch."""
    if local_path(url) is not None:
        return
    scheme = urlparse(url).scheme.lower()
    if scheme == "https" or (scheme == "http" and allow_http):
        return
    if scheme == "http":
        raise InvalidInput(
            f"{url}: plain http:// is not allowed (use https://, or set `allow_http: true` in"
            " the device trust policy, <state>/trust/policy.yaml, to opt in)",
            reason="http-not-allowed",
        )
    raise InvalidInput(
        f"scheme of {url!r} is not supported (use a path relative to the YAML file, an absolute"
        " path, file:// or https://)",
        reason="source-unsupported",
    )


def fetcher_for(url: str, allow_http: bool, timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> Fetcher:
    """The fetcher for `url`'s scheme, after `check_source`."""
    check_source(url, allow_http)
    if local_path(url) is not None:
        return FileFetcher()
    return HttpFetcher(allow_http=allow_http, timeout=timeout)


class _Throttled:
    """Calls `progress` at most every PROGRESS_EVERY_S, and always for the final count."""

    def __init__(self, progress: Progress | None, clock: Callable[[], float]) -> None:
        self.progress = progress
        self.clock = clock
        self.last = float("-inf")
        self.total: int | None = None

    def __call__(self, done: int, total: int | None, final: bool = False) -> None:
        self.total = total if total is not None else self.total
        now = self.clock()
        if self.progress and (final or now - self.last >= PROGRESS_EVERY_S):
            self.last = now
            self.progress(done, total)


@dataclass
class _Retry:
    retries: int
    backoff_s: float
    sleep: Callable[[float], None]
    rng: random.Random

    def run(self, attempt: Callable[[], T]) -> T:
        """Run `attempt`, retrying FetchDropped with full-jitter exponential backoff."""
        for n in range(self.retries + 1):
            try:
                return attempt()
            except FetchDropped as e:
                if n == self.retries:
                    raise TransientError(
                        f"failed after {n + 1} attempts: {e}", reason="fetch-failed"
                    ) from e
                self.sleep(self.rng.uniform(0, self.backoff_s * 2**n))
        raise AssertionError("unreachable")


def _size_exceeded(url: str, size: int | None, max_bytes: int) -> IntegrityError:
    amount = f"{size} bytes" if size is not None else "more"
    return IntegrityError(
        f"{url} is larger than allowed: {amount} > {max_bytes} bytes", reason="size-exceeded"
    )


def _transfer(
    fetcher: Fetcher, url: str, part: Partial, max_bytes: int, report: _Throttled
) -> bool:
    """One request: append to `part` from its size (or from 0 if the source cannot resume).

    Returns whether bytes from an earlier request were kept (a resumed download)."""
    with fetcher.open(url, part.size) as dl:
        if dl.total is not None and dl.total > max_bytes:
            raise _size_exceeded(url, dl.total, max_bytes)
        if dl.start != part.size:
            part.restart()
        report(part.size, dl.total)
        for chunk in dl.chunks:
            if part.size + len(chunk) > max_bytes:
                raise _size_exceeded(url, None, max_bytes)
            part.write(chunk)
            report(part.size, dl.total)
        if dl.total is not None and part.size != dl.total:
            raise FetchDropped(f"{url}: the transfer ended at {part.size} of {dl.total} bytes")
        return dl.start > 0


def fetch_into_store(
    url: str,
    sha256: str,
    store: Store,
    *,
    max_bytes: int,
    allow_http: bool = False,
    progress: Progress | None = None,
    retries: int = 3,
    backoff_s: float = 0.5,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    fetcher: Fetcher | None = None,
    what: str | None = None,
) -> Path:
    """Download `url` into `store` as the blob `sha256`, resuming any `.part`; return its path.

    `what` prefixes every error message (the caller names the desired file and field).
    """
    what = what or f"fetch {url}"
    owned = fetcher is None  # ours to close
    try:
        check_source(url, allow_http)
        fetcher = fetcher or fetcher_for(url, allow_http, timeout)
    except HotswapError as e:
        raise type(e)(f"{what}: {e.message}", reason=e.reason) from e
    report = _Throttled(progress, clock)
    retry = _Retry(retries, backoff_s, sleep, rng or random.Random())
    try:
        if store.has(sha256):
            return store.path(sha256)
        with store.partial(sha256) as part:
            if store.has(sha256):  # another worker fetched it while we waited for the .part
                return store.path(sha256)
            try:
                return retry.run(lambda: _attempt(fetcher, url, sha256, part, max_bytes, report))
            except IntegrityError:
                part.discard()
                raise
            except OSError as e:  # writing the .part or renaming it: the store's disk
                part.discard()
                raise _disk_error(e, url, store, report.total) from e
    except HotswapError as e:
        raise type(e)(f"{what}: {e.message}", reason=e.reason) from e
    except OSError as e:  # opening or re-hashing the .part
        err = _disk_error(e, url, store, report.total)
        raise TransientError(f"{what}: {err.message}", reason=err.reason) from e
    finally:
        if owned and isinstance(fetcher, HttpFetcher):
            fetcher.close()


def _attempt(
    fetcher: Fetcher, url: str, sha256: str, part: Partial, max_bytes: int, report: _Throttled
) -> Path:
    if part.size > max_bytes:
        part.restart()
    if part.size and part.hexdigest() == sha256:
        resumed = True  # a complete .part from an earlier run: only the rename was left
    else:
        resumed = _transfer(fetcher, url, part, max_bytes, report)
    actual = part.hexdigest()
    if actual != sha256 and resumed:
        # The prefix came from an earlier request (a crash, a registry that changed): before
        # calling the pinned digest wrong, download the whole file once more from byte 0.
        part.restart()
        _transfer(fetcher, url, part, max_bytes, report)
        actual = part.hexdigest()
    if actual != sha256:
        raise IntegrityError(
            f"sha256 mismatch for {url}: desired state pins {sha256}, the download hashes to {actual}",
            reason="sha256-mismatch",
        )
    report(part.size, report.total if report.total is not None else part.size, final=True)
    return part.commit()


def _disk_error(e: OSError, url: str, store: Store, total: int | None) -> TransientError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        needed = f"{total} bytes needed" if total is not None else "size unknown"
        return TransientError(
            f"no space left on device while fetching {url} into {store.root.parent}"
            f" ({needed}); the partial download was deleted, the next attempt starts over",
            reason="disk-full",
        )
    return TransientError(
        f"writing {url} into {store.root.parent}: {e.strerror or e}",
        reason="fetch-io-error",
    )


def fetch_bytes(
    url: str,
    max_bytes: int = 1 << 20,
    allow_http: bool = False,
    *,
    retries: int = 3,
    backoff_s: float = 0.5,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    fetcher: Fetcher | None = None,
) -> bytes:
    """A small document (a manifest, its signature) in memory, at most `max_bytes`."""
    check_source(url, allow_http)
    owned = fetcher is None
    fetcher = fetcher or fetcher_for(url, allow_http, timeout)
    retry = _Retry(retries, backoff_s, sleep, rng or random.Random())

    def attempt() -> bytes:
        buf = bytearray()
        with fetcher.open(url, 0) as dl:
            if dl.total is not None and dl.total > max_bytes:
                raise _size_exceeded(url, dl.total, max_bytes)
            for chunk in dl.chunks:
                buf += chunk
                if len(buf) > max_bytes:
                    raise _size_exceeded(url, None, max_bytes)
            if dl.total is not None and len(buf) != dl.total:
                raise FetchDropped(f"{url}: the transfer ended at {len(buf)} of {dl.total} bytes")
        return bytes(buf)

    try:
        return retry.run(attempt)
    except HotswapError as e:
        raise type(e)(f"fetch {url}: {e.message}", reason=e.reason) from e
    finally:
        if owned and isinstance(fetcher, HttpFetcher):
            fetcher.close()


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f}"


class ProgressBar:
    """`progress` callback drawing `\\r  label  12.3/45.6 MiB  27%` on a TTY; silent otherwise."""

    def __init__(self, label: str = "", stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self._drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        label = f"{self.label}  " if self.label else ""
        if total:
            text = f"\r  {label}{_mib(done)}/{_mib(total)} MiB  {done * 100 // total}%"
        else:
            text = f"\r  {label}{_mib(done)} MiB"
        self.stream.write(text)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
