"""How model bytes travel: a `Fetcher` chosen by scheme, and the one download loop into the store.

`download.py` (the Fetch step, and the manifest reader) calls `fetch_into_store` / `fetch_bytes`;
they pick a `Fetcher` (`stream.py`) by scheme: `FileFetcher` (`files.py`) for paths and
`file://`, `HttpFetcher` (`http.py`, httpx) for `https://` and, only where the device trust
policy says `allow_http`, `http://`, and `OciFetcher` (`oci.py`) for `oci://` registries; the
network ones take the per-host `Credentials` (`credentials.py`). A fetcher only opens a byte
stream at an offset; everything
that must hold whatever the transport — running sha256, size cap, resume from
`store/partial/<hex>.part`, retries with backoff and jitter, atomic rename, progress
(`progress.py`) — lives once, here, in `fetch_into_store`. Tests swap the transport for a fake
registry on 127.0.0.1 (tests/support/fakeregistry.py).

Failures, by what happens next (reason strings are stable; the transports raise the first two
rows' errors and the redirect refusal, this module decides the rest):
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

import errno
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

import httpx

from reconciler.core.errors import HotswapError, IntegrityError, InvalidInput, TransientError
from reconciler.core.ociref import is_oci
from reconciler.fetch.credentials import Credentials
from reconciler.fetch.files import FileFetcher, local_path
from reconciler.fetch.http import DEFAULT_TIMEOUT, HttpFetcher
from reconciler.fetch.oci import OciFetcher
from reconciler.fetch.progress import Progress, Throttled
from reconciler.fetch.ratelimit import TokenBucket
from reconciler.fetch.stream import FetchDropped, Fetcher
from reconciler.state.store import Partial, Store

T = TypeVar("T")


def check_source(url: str, allow_http: bool) -> None:
    """Refuse http:// without the trust policy's opt-in, and any scheme we do not fetch."""
    if local_path(url) is not None:
        return
    scheme = urlparse(url).scheme.lower()
    if scheme in ("https", "oci") or (scheme == "http" and allow_http):
        return
    if scheme == "http":
        raise InvalidInput(
            f"{url}: plain http:// is not allowed (use https://, or set `allow_http: true` in"
            " the device trust policy, <state>/trust/policy.yaml, to opt in)",
            reason="http-not-allowed",
        )
    raise InvalidInput(
        f"scheme of {url!r} is not supported (use a path relative to the YAML file, an absolute"
        " path, file://, https:// or oci://)",
        reason="source-unsupported",
    )


def fetcher_for(
    url: str,
    allow_http: bool,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    credentials: Credentials | None = None,
) -> Fetcher:
    """The fetcher for `url`'s scheme, after `check_source`."""
    check_source(url, allow_http)
    if local_path(url) is not None:
        return FileFetcher()
    if is_oci(url):
        return OciFetcher(allow_http=allow_http, timeout=timeout, credentials=credentials)
    return HttpFetcher(allow_http=allow_http, timeout=timeout, credentials=credentials)


def _close(fetcher: Fetcher | None) -> None:
    close = getattr(fetcher, "close", None)
    if close is not None:
        close()


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
    fetcher: Fetcher,
    url: str,
    part: Partial,
    max_bytes: int,
    report: Throttled,
    limit: TokenBucket | None = None,
) -> bool:
    """One request: append to `part` from its size (or from 0 if the source cannot resume),
    paced by `limit` (the device's download rate limit) when there is one.

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
            if limit is not None:
                limit.take(len(chunk))
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
    credentials: Credentials | None = None,
    rate_limit: TokenBucket | None = None,
) -> Path:
    """Download `url` into `store` as the blob `sha256`, resuming any `.part`; return its path.

    `what` prefixes every error message (the caller names the desired file and field);
    `rate_limit` paces the bytes (shared by every download of the device).
    """
    what = what or f"fetch {url}"
    owned = fetcher is None  # ours to close
    try:
        check_source(url, allow_http)
        fetcher = fetcher or fetcher_for(url, allow_http, timeout, credentials)
    except HotswapError as e:
        raise type(e)(f"{what}: {e.message}", reason=e.reason) from e
    report = Throttled(progress, clock)
    retry = _Retry(retries, backoff_s, sleep, rng or random.Random())
    try:
        if store.has(sha256):
            return store.path(sha256)
        with store.partial(sha256) as part:
            if store.has(sha256):  # another worker fetched it while we waited for the .part
                return store.path(sha256)
            try:
                return retry.run(
                    lambda: _attempt(fetcher, url, sha256, part, max_bytes, report, rate_limit)
                )
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
        if owned:
            _close(fetcher)


def _attempt(
    fetcher: Fetcher,
    url: str,
    sha256: str,
    part: Partial,
    max_bytes: int,
    report: Throttled,
    limit: TokenBucket | None = None,
) -> Path:
    if part.size > max_bytes:
        part.restart()
    if part.size and part.hexdigest() == sha256:
        resumed = True  # a complete .part from an earlier run: only the rename was left
    else:
        resumed = _transfer(fetcher, url, part, max_bytes, report, limit)
    actual = part.hexdigest()
    if actual != sha256 and resumed:
        # The prefix came from an earlier request (a crash, a registry that changed): before
        # calling the pinned digest wrong, download the whole file once more from byte 0.
        part.restart()
        _transfer(fetcher, url, part, max_bytes, report, limit)
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
    credentials: Credentials | None = None,
) -> bytes:
    """A small document (a manifest, its signature) in memory, at most `max_bytes`."""
    check_source(url, allow_http)
    owned = fetcher is None
    fetcher = fetcher or fetcher_for(url, allow_http, timeout, credentials)
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
        if owned:
            _close(fetcher)
