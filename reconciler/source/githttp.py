"""The built-in git source over https: credentials.yaml's secrets and TLS files as git config.

`reconciler.loop.gitpoll.http_access` reads the trust dir's credentials.yaml into an
`HttpAccess`; `GitMirror` turns it into config for the fetch alone, passed in GIT_CONFIG_*
variables (never argv, where `ps` shows it) and scoped to the remote's `scheme://host:port/`, so
neither the header nor the client certificate goes to a host a redirect points at.

git reads GIT_SSL_CAINFO (and GIT_SSL_CERT, GIT_SSL_KEY, GIT_SSL_NO_VERIFY) after its config, so
an environment that sets them would silently win over credentials.yaml: they are dropped from
the fetch's environment whenever credentials.yaml says what they would override.

CA semantics: git's `http.sslCAInfo` *replaces* the system's CAs, while credentials.yaml's
`ca_bundle` means "trusted besides the system's" (as the HTTP fetcher reads it). So git is given
a combined bundle, `<git state>/ca-bundle.pem`: the CA file git would have used otherwise
(GIT_SSL_CAINFO, else the system's bundle) followed by the configured one, rewritten atomically
when either changes. A host that should trust only its own CA is served by that CA anyway.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from reconciler.state.atomic import atomic_write

CA_BUNDLE_FILE = "ca-bundle.pem"
_SYSTEM_CA_FILES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/cert.pem",
)
# The environment variables git reads after its config, per config key they would override.
_OVERRIDES = {
    "sslcainfo": ("GIT_SSL_CAINFO", "GIT_SSL_NO_VERIFY"),
    "sslcert": ("GIT_SSL_CERT",),
    "sslkey": ("GIT_SSL_KEY",),
}


@dataclass(frozen=True)
class HttpAccess:
    """What git needs for one https remote; `header` and `secrets` never show in a repr."""

    header: str | None = field(default=None, repr=False)  # "Authorization: ..."
    secrets: tuple[str, ...] = field(default=(), repr=False)  # cleaned out of error messages
    ca_bundle: str | None = None  # PEM path, trusted besides the system's CAs
    client_cert: str | None = None  # PEM path; its key in client_key or in the same file
    client_key: str | None = None

    def git_config(self, url: str, state: Path, environ: dict[str, str]) -> dict[str, str]:
        """The extra config for a fetch of `url`; writes the combined CA bundle under `state`."""
        scope = f"http.{_scope(url)}."
        config: dict[str, str] = {}
        if self.header:
            config[scope + "extraHeader"] = self.header
        if self.ca_bundle:
            config[scope + "sslCAInfo"] = str(combined_ca_bundle(self.ca_bundle, state, environ))
        if self.client_cert:
            config[scope + "sslCert"] = self.client_cert
            config[scope + "sslKey"] = self.client_key or self.client_cert
        return config

    def clean(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


def _scope(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.netloc.rpartition('@')[2]}/"


def without_overrides(environ: dict[str, str], config: dict[str, str]) -> dict[str, str]:
    """`environ` less the variables that would override `config` (see the module docstring)."""
    dropped = {
        name for key in config for name in _OVERRIDES.get(key.rpartition(".")[2].lower(), ())
    }
    return {k: v for k, v in environ.items() if k not in dropped}


def system_ca_file(environ: dict[str, str]) -> Path | None:
    """The CA file git would trust without credentials.yaml, when one can be found."""
    default = ssl.get_default_verify_paths()
    for candidate in (environ.get("GIT_SSL_CAINFO"), default.cafile, *_SYSTEM_CA_FILES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def combined_ca_bundle(configured: str, state: Path, environ: dict[str, str]) -> Path:
    """`<state>/ca-bundle.pem`: the system's CAs, then `configured` (OSError when unreadable)."""
    system = system_ca_file(environ)
    body = system.read_bytes() if system is not None else b""
    if body and not body.endswith(b"\n"):
        body += b"\n"
    body += Path(configured).read_bytes()
    target = Path(state) / CA_BUNDLE_FILE
    try:
        unchanged = target.read_bytes() == body
    except OSError:
        unchanged = False
    if not unchanged:
        state.mkdir(parents=True, exist_ok=True)
        atomic_write(target, body)
    return target


_HINTS = (
    (("error: 401", "could not read username", "authentication failed"),
     "the server refused the credentials: check this host's entry in credentials.yaml"),
    (("certificate verification failed", "certificate problem", "self signed certificate",
      "unable to get local issuer"),
     "the server's certificate is not trusted: give its CA as ca_bundle in credentials.yaml"),
    # A server that refuses a missing client certificate just ends the session; curl then
    # reports whatever the next socket call saw.
    (("handshake", "gnutls", "openssl", "tls connection", "alert", "getpeername", "recv failure",
      "reset by peer", "pull function", "non-properly terminated"),
     "the TLS session failed: does the server require a client certificate"
     " (client_cert in credentials.yaml)?"),
)  # fmt: skip


def hint(stderr: str) -> str | None:
    """A reading of a failed https fetch's message for the operator, when one fits."""
    lowered = stderr.lower()
    for needles, text in _HINTS:
        if any(n in lowered for n in needles):
            return text
    return None
