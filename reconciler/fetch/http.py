"""The HTTP transport: httpx over HTTP/1.1, resuming with Range, following only safe redirects.

`transports.fetcher_for` builds an `HttpFetcher` for `https://` (and `http://` where the device
trust policy says `allow_http`). It asks for identity encoding, because the sha256 pins the bytes
as stored, and streams raw chunks so a dropped line loses nothing already received. The status
codes map onto the reasons in the failure table of `transports`: 5xx, 408, 429 and drops are
`FetchDropped` (retried), 401/403/404/410 `source-missing`, a redirect that leaves http(s), goes
from https down to http or to http without the opt-in `redirect-refused`; a 401/403 to a
request that carried credentials `auth-failed` (one answer, not retried here). A 416, or a 206
that does not start where the `.part` ends, is asked once more from byte 0. Per-host
credentials and TLS come from `credentials.Credentials` (`<trust>/credentials.yaml`).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import re
import threading
from collections.abc import Iterator
from urllib.parse import urlparse

import httpx

from reconciler.core.errors import InvalidInput, TransientError
from reconciler.fetch.credentials import Credentials, HostAuth
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
    """httpx over HTTP/1.1: identity encoding (the bytes the sha256 pins), Range for resume.

    One client per host, because TLS settings (a CA bundle, a client certificate) are per
    client in httpx; each carries that host's `HostAuth` from `credentials`."""

    def __init__(
        self,
        allow_http: bool = False,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.allow_http = allow_http
        self.timeout = timeout
        self.transport = transport
        self.credentials = credentials or Credentials()
        self._clients: dict[str, httpx.Client] = {}
        self._lock = threading.Lock()

    def client(self, url: str) -> httpx.Client:
        """The client for `url`'s host (made on first use)."""
        netloc = urlparse(url).netloc.lower()
        with self._lock:
            if netloc not in self._clients:
                self._clients[netloc] = self._make_client(netloc)
            return self._clients[netloc]

    def _make_client(self, netloc: str) -> httpx.Client:
        access = self.credentials.for_host(netloc)
        return httpx.Client(
            timeout=self.timeout,
            follow_redirects=True,
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            event_hooks={"response": [self._on_response]},
            transport=self.transport,
            verify=self.credentials.ssl_context(netloc),
            auth=HostAuth(access, self._get_token, self.allow_http),
        )

    def _get_token(
        self, url: str, query: dict[str, str], headers: dict[str, str]
    ) -> httpx.Response:
        try:
            return self.client(url).get(url, params=query, headers=headers, auth=None)
        except httpx.TransportError as e:
            raise FetchDropped(f"token service {url}: {_describe(e)}") from e

    def _on_response(self, response: httpx.Response) -> None:
        if response.has_redirect_location:
            target = response.url.join(response.headers["location"])
            check_redirect(str(response.url), str(target), self.allow_http)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def open(self, url: str, offset: int = 0) -> contextlib.AbstractContextManager[Download]:
        return self._open(url, offset)

    @contextlib.contextmanager
    def _open(self, url: str, offset: int) -> Iterator[Download]:
        response, start, total = self._get(url, offset)
        try:
            yield Download(start, total, _http_chunks(response))
        finally:
            response.close()

    def send(
        self, request: httpx.Request, *, stream: bool = False, what: str | None = None
    ) -> httpx.Response:
        """`request` through its host's client; transport failures as `FetchDropped`."""
        url = what or str(request.url)
        try:
            return self.client(str(request.url)).send(request, stream=stream)
        except httpx.TooManyRedirects as e:
            raise TransientError(f"{url}: too many redirects", reason="fetch-failed") from e
        except httpx.InvalidURL as e:
            raise InvalidInput(f"{url}: invalid URL: {e}", reason="source-invalid") from e
        except httpx.TransportError as e:
            raise FetchDropped(f"{url}: {_describe(e)}") from e

    def _send(self, url: str, offset: int) -> httpx.Response:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            request = self.client(url).build_request("GET", url, headers=headers)
        except httpx.InvalidURL as e:
            raise InvalidInput(f"{url}: invalid URL: {e}", reason="source-invalid") from e
        return self.send(request, stream=True)

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
            raise refusal(response)
        raise FetchDropped(f"{url}: the server does not answer Range requests consistently")


def refusal(response: httpx.Response) -> TransientError:
    """The error for a status that is neither the bytes nor a Range mismatch."""
    code, where = response.status_code, str(response.url)
    if code in (401, 403) and "authorization" in response.request.headers:
        return TransientError(
            f"{where}: HTTP {code} {response.reason_phrase}: the server refused the credentials"
            f" for {response.url.netloc.decode()} in credentials.yaml",
            reason="auth-failed",
        )
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
