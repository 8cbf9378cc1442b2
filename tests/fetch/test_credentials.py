"""credentials.yaml: per-host bearer tokens, client certificates (mTLS) and CA bundles for every
HTTP source, checked like desired state (file:line, field) and never shown.

A local HTTPS server with a CA made in the test requires a client certificate; a plain HTTP
server requires a bearer token. Both are started and stopped by their test on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from reconciler.core.errors import TransientError
from reconciler.fetch.credentials import Credentials, HostAccess, Secret
from reconciler.fetch.transports import fetch_bytes, fetch_into_store
from reconciler.ops.credentials import CredentialsError, load_credentials, parse_credentials
from reconciler.state.store import Store
from tests.support.tls import FileServer, make_pki

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()
TOKEN = "tok-0123456789-very-secret"
FAST = {"timeout": httpx.Timeout(3.0), "sleep": lambda _s: None, "retries": 1}


def write(trust: Path, text: str) -> Path:
    trust.mkdir(parents=True, exist_ok=True)
    (trust / "credentials.yaml").write_text(text)
    return trust


def test_mtls_with_a_private_ca_from_credentials_yaml(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "trust")
    with FileServer({"/m.onnx": DATA}, pki=pki) as srv:
        trust = write(
            tmp_path / "trust",
            f"hosts:\n  {srv.host}:\n    ca_bundle: ca.pem\n"
            "    client_cert: client.pem\n    client_key: client.key\n",
        )
        creds = load_credentials(trust)
        store = Store(tmp_path / "store")
        path = fetch_into_store(srv.url("/m.onnx"), SHA, store, max_bytes=1 << 20,
                                credentials=creds, **FAST)  # fmt: skip
        assert path.read_bytes() == DATA
        without_cert = write(tmp_path / "t2", f"ca_bundle: {pki.ca}\n")
        with pytest.raises(TransientError) as refused:  # the server wants a client certificate
            fetch_into_store(srv.url("/m.onnx"), SHA, Store(tmp_path / "s2"), max_bytes=1 << 20,
                             credentials=load_credentials(without_cert), **FAST)  # fmt: skip
        assert refused.value.reason == "fetch-failed"
        with pytest.raises(TransientError) as unknown_ca:  # the system CAs do not know ours
            fetch_bytes(srv.url("/m.onnx"), **FAST)
        assert unknown_ca.value.reason == "fetch-failed"


def test_a_bearer_token_is_sent_and_a_wrong_one_is_one_refusal(tmp_path: Path) -> None:
    with FileServer({"/m.onnx": DATA}, token=TOKEN) as srv:
        good = Credentials({srv.host: HostAccess(srv.host, bearer_token=Secret(TOKEN))})
        got = fetch_bytes(srv.url("/m.onnx"), allow_http=True, credentials=good, **FAST)
        assert got == DATA and srv.seen_auth == [f"Bearer {TOKEN}"]
        srv.seen_auth.clear()
        bad = Credentials({srv.host: HostAccess(srv.host, bearer_token=Secret("nope-xyz"))})
        with pytest.raises(TransientError) as info:
            fetch_bytes(srv.url("/m.onnx"), allow_http=True, credentials=bad, **FAST)
        assert info.value.reason == "auth-failed" and len(srv.seen_auth) == 1
        assert "nope-xyz" not in str(info.value)
        srv.seen_auth.clear()
        other = Credentials({"elsewhere.example": HostAccess("x", bearer_token=Secret(TOKEN))})
        with pytest.raises(TransientError):  # a token is only ever sent to its own host
            fetch_bytes(srv.url("/m.onnx"), allow_http=True, credentials=other, **FAST)
        assert srv.seen_auth == [None]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            "hosts:\n  a.example:\n    username: u\n    password: 12345678\n",
            ":4 hosts.a.example.password: must be a string",
        ),
        (
            "hosts:\n  a.example:\n    password: hunter2-secret\n",
            ":3 hosts.a.example: username and password go together",
        ),
        (
            "hosts:\n  a.example:\n    bearer_token: hunter2-secret\n    tokne: x\n",
            ":3 hosts.a.example: unknown field 'tokne'",
        ),
        (
            "hosts:\n  a.example:\n    bearer_token: hunter2-secret\n    username: u\n    password: p\n",
            "either bearer_token or username",
        ),
        ("hosts:\n  a.example:\n    bearer_token: !!int hunter2-secret\n", ":3"),
        (
            "hosts:\n  a.example:\n    client_cert: missing.pem\n",
            ":3 hosts.a.example: the client certificate",
        ),
        ("ca_bundle: missing.pem\n", ":1 ca_bundle: the CA bundle"),
    ],
)
def test_a_bad_credentials_file_names_file_line_and_field_never_the_value(
    tmp_path: Path, text: str, where: str
) -> None:
    with pytest.raises(CredentialsError) as info:
        parse_credentials(text.encode(), tmp_path, "trust/credentials.yaml")
    message = info.value.message
    assert message.startswith("trust/credentials.yaml:") and where in message, message
    for secret in ("12345678", "hunter2-secret"):
        assert secret not in message and secret not in repr(info.value)


def test_secrets_do_not_show_in_reprs(tmp_path: Path) -> None:
    trust = write(tmp_path, f"hosts:\n  h.example:\n    bearer_token: {TOKEN}\n")
    creds = load_credentials(trust)
    assert TOKEN not in repr(creds) and TOKEN not in str(creds.hosts)
    assert load_credentials(tmp_path / "nothing-here") == Credentials()


def test_an_edited_file_is_read_again(tmp_path: Path) -> None:
    trust = write(tmp_path, "hosts:\n  a.example: {bearer_token: one}\n")
    first = load_credentials(trust)
    assert load_credentials(trust) is first  # unchanged: not parsed again on every pass
    write(tmp_path, "hosts:\n  b.example: {bearer_token: two-two}\n")
    assert set(load_credentials(trust).hosts) == {"b.example"}
