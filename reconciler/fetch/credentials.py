"""Per-host access for HTTP and OCI sources: secrets, client certificates, CA bundles, auth.

`ops.credentials` reads `<trust>/credentials.yaml` into a `Credentials`; `http.HttpFetcher`
asks it, per host, for the TLS context (`ssl_context`: a custom CA bundle, a client
certificate for mTLS) and the httpx auth (`HostAuth`). Secrets are `Secret` values whose
repr is a mask, so no log line, journal record, status file or error message built from these
objects can carry one; only `HostAuth` reveals them, into request headers.

`HostAuth` answers the challenges registries send (RFC 7235, the OCI distribution token flow):
a static bearer token is always sent; basic credentials are sent after a `Basic` challenge (and
from then on at once); a `Bearer realm=...,service=...,scope=...` challenge fetches a token
from the realm (with the basic credentials, when there are any) and retries once. A request
that was already answered with credentials is never retried: a wrong password costs one 401,
not a storm.
"""

from __future__ import annotations

import base64
import re
import ssl
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from urllib.parse import urlparse

import httpx

from reconciler.core.errors import TransientError


class Secret:
    """A token or password; shown as *** everywhere but in the header it is meant for."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class HostAccess:
    """What credentials.yaml says for one host (`host` or `host:port`)."""

    host: str
    bearer_token: Secret | None = None
    username: str | None = None
    password: Secret | None = None
    client_cert: str | None = None  # PEM path (mTLS); its key in client_key, or in the same file
    client_key: str | None = None
    ca_bundle: str | None = None  # PEM path: CAs trusted for this host, besides the system's
    plain_http: bool = False  # oci:// over http (still needs the trust policy's allow_http)

    @property
    def basic(self) -> str | None:
        if self.username is None or self.password is None:
            return None
        raw = f"{self.username}:{self.password.reveal()}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True)
class Credentials:
    hosts: dict[str, HostAccess] = field(default_factory=dict)
    ca_bundle: str | None = None  # for every host without its own
    source: str = "(none)"  # the file they came from, for messages
    # TLS contexts made so far, per host: building one reads files
    _made: dict[str, ssl.SSLContext] = field(default_factory=dict, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def for_host(self, netloc: str) -> HostAccess | None:
        """The entry for `host:port`, else for `host`."""
        netloc = netloc.lower().rpartition("@")[2]
        return self.hosts.get(netloc) or self.hosts.get(_hostname(netloc))

    def for_url(self, url: str) -> HostAccess | None:
        return self.for_host(urlparse(url).netloc)

    def ssl_context(self, netloc: str) -> ssl.SSLContext:
        """The TLS settings for `netloc`: the system CAs plus its CA bundle, its client cert."""
        with self._lock:
            if netloc not in self._made:
                self._made[netloc] = self._make_context(netloc)
            return self._made[netloc]

    def _make_context(self, netloc: str) -> ssl.SSLContext:
        access = self.for_host(netloc)
        ctx = ssl.create_default_context()
        ca = (access.ca_bundle if access else None) or self.ca_bundle
        try:
            if ca:
                ctx.load_verify_locations(cafile=ca)
            if access and access.client_cert:
                ctx.load_cert_chain(access.client_cert, access.client_key)
        except (OSError, ssl.SSLError) as e:
            which = "client certificate" if access and access.client_cert else "CA bundle"
            raise TransientError(
                f"{self.source}: the {which} for {netloc} cannot be used:"
                f" {getattr(e, 'strerror', None) or type(e).__name__}",
                reason="credentials-unusable",
            ) from e
        return ctx


def _hostname(netloc: str) -> str:
    if netloc.startswith("["):
        return netloc.partition("]")[0] + "]"
    return netloc.partition(":")[0]


_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')

# (realm URL, headers) -> the token response; the fetcher passes its own client's GET
TokenGetter = Callable[[str, dict[str, str], dict[str, str]], httpx.Response]


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="x",scope="y"` as ("bearer", {"realm": "x", "scope": "y"})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m[1].lower(): m[2] if m[2] is not None else m[3] for m in _PARAM.finditer(rest)}
    return scheme.lower(), params


class HostAuth(httpx.Auth):
    """httpx auth for one host's entry (or none): see the module docstring for the flow."""

    def __init__(self, access: HostAccess | None, get_token: TokenGetter, allow_http: bool) -> None:
        self.access = access
        self.get_token = get_token
        self.allow_http = allow_http
        self._lock = threading.Lock()
        self._sticky: str | None = None  # the Authorization that the host took last

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        static = self.access.bearer_token if self.access else None
        if static is not None:
            request.headers["Authorization"] = f"Bearer {static.reveal()}"
            yield request
            return
        with self._lock:
            sticky = self._sticky
        if sticky:
            request.headers["Authorization"] = sticky
        response = yield request
        if response.status_code != 401:
            return
        answer = self._answer(response.headers.get("www-authenticate", ""), sticky)
        if answer is None:
            return
        with self._lock:
            self._sticky = answer
        request.headers["Authorization"] = answer
        yield request

    def _answer(self, header: str, sent: str | None) -> str | None:
        """The Authorization for a retry, or None when there is nothing new to offer."""
        scheme, params = parse_challenge(header)
        basic = self.access.basic if self.access else None
        if scheme == "basic":
            return basic if basic and basic != sent else None
        if scheme != "bearer" or not params.get("realm"):
            return None
        token = self._token(params, basic)
        answer = f"Bearer {token}"
        return answer if answer != sent else None

    def _token(self, params: dict[str, str], basic: str | None) -> str:
        realm = params["realm"]
        scheme = urlparse(realm).scheme.lower()
        if scheme != "https" and not (scheme == "http" and self.allow_http):
            raise TransientError(
                f"the registry's token service {realm} is not https (the trust policy's"
                " allow_http would allow plain http)",
                reason="auth-failed",
            )
        query = {k: params[k] for k in ("service", "scope") if params.get(k)}
        response = self.get_token(realm, query, {"Authorization": basic} if basic else {})
        if response.status_code in (401, 403):
            raise TransientError(
                f"the token service {realm} refused {'the credentials' if basic else 'anonymous'}"
                f" access (HTTP {response.status_code}); check credentials.yaml",
                reason="auth-failed",
            )
        try:
            body = response.json() if response.status_code == 200 else {}
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise TransientError(
                f"the token service {realm} gave no token (HTTP {response.status_code})",
                reason="auth-failed",
            )
        return token
