"""`<trust>/credentials.yaml`: per-host secrets and TLS files for model sources, read and checked.

The controller reads it with the trust policy on every pass (`load_credentials`, keeping the last
good one when it breaks) and hands the result to the fetches; `hotswap publish --to oci://`
reads one with `--credentials`. Parsing is desired state's (`source.yamldoc`: bounded, line
numbers kept), the schema is `schemas/credentials.v1.json`, and problems read
`credentials.yaml:7 hosts.registry.example.password: must be a string` — built here from the
schema error's kind and path only, never from the value, because the value may be the secret.
Relative file names resolve against the trust dir, and every CA bundle and client certificate
is loaded once here, so a bad file is reported with its line at load time, not at first fetch.

    ca_bundle: ca.pem                 # optional: CAs for every host, besides the system's
    hosts:
      models.example.com: {bearer_token: "..."}
      registry.example:5000: {username: robot, password: "..."}
      mtls.example.com: {client_cert: client.pem, client_key: client.key, ca_bundle: ca.pem}
      127.0.0.1:5000: {plain_http: true}   # oci:// over http (with policy.yaml allow_http)
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from reconciler.core.desired import LoadError
from reconciler.core.errors import HotswapError, InvalidInput
from reconciler.fetch.credentials import Credentials, HostAccess, Secret
from reconciler.source.messages import field_text
from reconciler.source.yamldoc import Document, parse_document

CREDENTIALS_FILE = "credentials.yaml"
SCHEMA_FILE = "credentials.v1.json"
MAX_BYTES = 256 * 1024
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


class CredentialsError(InvalidInput):
    """credentials.yaml cannot be used; the message names file:line and field, not values."""

    reason = "trust-config"


@functools.lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    package = Path(__file__).resolve().parents[1]
    for folder in (package.parent / "schemas", package / "_schemas"):
        if (folder / SCHEMA_FILE).is_file():
            return Draft202012Validator(json.loads((folder / SCHEMA_FILE).read_text("utf-8")))
    raise FileNotFoundError(f"{SCHEMA_FILE} not found beside the reconciler package")


def _describe(err: ValidationError) -> str:
    """What is wrong, from the kind of error only (the instance may be a secret)."""
    kind = err.validator
    if kind == "type":
        return f"must be a {err.validator_value}"
    if kind == "additionalProperties":
        allowed = ", ".join(sorted(err.schema.get("properties", {})))
        extra = sorted(k for k in err.instance if k not in err.schema.get("properties", {}))
        return f"unknown field {', '.join(map(repr, extra))} (allowed: {allowed})"
    if kind == "dependentRequired":
        return "username and password go together; client_key needs client_cert"
    if kind == "not":
        return "give either bearer_token or username/password, not both"
    if kind == "minLength":
        return "must not be empty"
    if kind == "pattern":  # a host key (never a secret): name it
        return f"host {err.instance!r} is not HOST or HOST:PORT"
    return f"is not valid ({kind})"


def _first_problem(doc: Document) -> tuple[int, str, str] | None:
    errors = sorted(_validator().iter_errors(doc.data), key=lambda e: list(map(str, e.path)))
    if not errors:
        return None
    err = errors[0]
    path = tuple(err.absolute_path)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return doc.line_of(path), field_text(path), _describe(err) + more


def _fail(shown: str, line: int | None, where: str | None, message: str) -> CredentialsError:
    place = f"{shown}:{line}" if line else f"{shown}:"
    return CredentialsError(f"{place} {where}: {message}" if where else f"{place} {message}")


def _path(trust_dir: Path, value: str | None) -> str | None:
    return None if value is None else str(trust_dir / value)  # an absolute value stays absolute


def _host(trust_dir: Path, host: str, entry: dict[str, Any]) -> HostAccess:
    def secret(key: str) -> Secret | None:
        return Secret(entry[key]) if key in entry else None

    return HostAccess(
        host=host.lower(),
        bearer_token=secret("bearer_token"),
        username=entry.get("username"),
        password=secret("password"),
        client_cert=_path(trust_dir, entry.get("client_cert")),
        client_key=_path(trust_dir, entry.get("client_key")),
        ca_bundle=_path(trust_dir, entry.get("ca_bundle")),
        plain_http=bool(entry.get("plain_http", False)),
    )


def parse_credentials(raw: bytes, trust_dir: Path, shown: str) -> Credentials:
    """The credentials in `raw` (the file's bytes); CredentialsError naming file:line."""
    doc = parse_document(raw, shown)
    if isinstance(doc, LoadError):
        raise CredentialsError(_QUOTED.sub("'...'", doc.message))
    if doc.data is None:
        return Credentials(source=shown)
    problem = _first_problem(doc)
    if problem is not None:
        raise _fail(shown, *problem)
    data: dict[str, Any] = doc.data
    hosts = {h.lower(): _host(trust_dir, h, e) for h, e in (data.get("hosts") or {}).items()}
    creds = Credentials(hosts, _path(trust_dir, data.get("ca_bundle")), shown)
    for host in ["", *(data.get("hosts") or {})]:  # "": the global CA bundle alone
        try:
            creds.ssl_context(host.lower())
        except HotswapError as e:
            path = ("hosts", host) if host else ("ca_bundle",)
            message = e.message.removeprefix(f"{shown}: ")
            raise _fail(shown, doc.line_of(path), field_text(path), message) from e
    return creds


def _stamp(path: Path | None, creds: Credentials | None = None) -> tuple[Any, ...]:
    """What changes when the file or a file it names does (CA bundles, client certificates)."""
    named = [path] if path is not None else []
    if creds is not None:
        named += [Path(p) for p in (creds.ca_bundle,) if p]
        for h in creds.hosts.values():
            named += [Path(p) for p in (h.ca_bundle, h.client_cert, h.client_key) if p]
    stamps: list[tuple[Any, ...]] = []
    for p in named:
        try:
            st = p.stat()
            stamps.append((str(p), st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            stamps.append((str(p), None))
    return tuple(stamps)


# path -> (stamp, credentials): the controller asks on every pass; TLS contexts cost milliseconds
_LOADED: dict[str, tuple[tuple[Any, ...], Credentials]] = {}


def load_credentials(trust_dir: Path) -> Credentials:
    """`<trust_dir>/credentials.yaml`, or no credentials when there is no such file."""
    path = Path(trust_dir) / CREDENTIALS_FILE
    known = _LOADED.get(str(path))
    if known is not None and known[0] == _stamp(path, known[1]):
        return known[1]
    before = _stamp(path)  # taken before the read: a write during it is seen next pass
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return Credentials()
    except OSError as e:
        raise CredentialsError(f"{path}: cannot read: {e.strerror or e}") from e
    if len(raw) > MAX_BYTES:
        raise CredentialsError(f"{path}: larger than {MAX_BYTES} bytes")
    creds = parse_credentials(raw, Path(trust_dir), str(path))
    _LOADED[str(path)] = (before + _stamp(None, creds), creds)
    return creds
