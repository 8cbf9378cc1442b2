"""The HTTP transport: httpx over HTTP/1.1, resuming with Range, following only safe redirects.

`transports.fetcher_for` builds an `HttpFetcher` for `https://` (and `http://` where the device
trust policy says `allow_http`). It asks for identity encoding, because the sha256 pins the bytes
as stored, and streams raw chunks so a dropped line loses nothing already received. The status
codes map onto the reasons in the failure table of `transports`: 5xx, 408, 429 and drops are
`FetchDropped` (retried), 401/403/404/410 `source-missing`, a redirect that leaves http(s), goes
from https down to http or to http without the opt-in `redirect-refused`. A 416, or a 206 that
does not start where the `.part` ends, is asked once more from byte 0.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import re
from collections.abc import Iterator
from urllib.parse import urlparse

import httpx

from reconciler.core.errors import InvalidInput, TransientError
from reconciler.fetch.stream import Download, FetchDropped

DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=30.0, write=30.0, pool=10.0)
_MISSING = (401, 403, 404, 410)
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")

try:
    USER_AGENT = f"hotswap/{importlib.metadata.version('hotswap')}"
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    USER_AGENT = "hotswap/dev"


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

    def _send(self, url: str, offset: int) -> httpx.Response:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            return self.client.send(
                self.client.build_request("GET", url, headers=headers), stream=True
            )
        except httpx.TooManyRedirects as e:
            raise TransientError(f"{url}: too many redirects", reason="fetch-failed") from e
        except httpx.InvalidURL as e:
            raise InvalidInput(f"{url}: invalid URL: {e}", reason="source-invalid") from e
        except httpx.TransportError as e:
            raise FetchDropped(f"{url}: {_describe(e)}") from e

    def _get(self, url: str, offset: int) -> tuple[httpx.Response, int, int | None]:
        for _ in range(3):  # a 416 or a mismatched 206 is asked once more, from byte 0
            response = self._send(url, offset)
            code = response.status_code
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
            raise _refusal(response)
        raise FetchDropped(f"{url}: the server does not answer Range requests consistently")


def _refusal(response: httpx.Response) -> TransientError:
    """The error for a status that is neither the bytes nor a Range mismatch."""
    code, where = response.status_code, str(response.url)
    if code in _MISSING:
        return TransientError(
            f"{where}: HTTP {code} {response.reason_phrase}", reason="source-missing"
        )
    if code in (408, 429) or code >= 500:
        return FetchDropped(f"{where}: HTTP {code} {response.reason_phrase}")
    return TransientError(
        f"{where}: unexpected HTTP {code} {response.reason_phrase}", reason="fetch-failed"
    )


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
