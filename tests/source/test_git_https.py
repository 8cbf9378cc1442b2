"""The built-in git source over https, against the real `git http-backend` behind TLS, with
credentials and TLS files from the trust dir's credentials.yaml."""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.loop.gitpoll import GitSource, http_access
from reconciler.source import gitsync
from reconciler.source.gitrev import git_revision
from reconciler.source.gitsync import GitSourceConfig
from tests.support.git_http import GitHttpServer
from tests.support.gitrepos import Upstream
from tests.support.gitsync import git_tools_missing
from tests.support.tls import Pki, make_pki

pytestmark = pytest.mark.skipif(bool(git_tools_missing()), reason=str(git_tools_missing()))

PATH = "devices/line-3"
PASSWORD = "hunter2-very-secret"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def trust_dir(tmp_path: Path, host: str, lines: list[str], ca: Path | None = None) -> Path:
    trust = tmp_path / "trust"
    trust.mkdir(exist_ok=True)
    head = [f"ca_bundle: {ca}"] if ca else []
    body = "\n".join([*head, "hosts:", f"  {host}:", *(f"    {x}" for x in lines)])
    (trust / "credentials.yaml").write_text(body + "\n")
    return trust


def basic(server: GitHttpServer, password: str = PASSWORD) -> list[str]:
    return [f"username: {server.username}", f"password: {password}"]


def source(tmp_path: Path, url: str, trust: Path) -> GitSource:
    return GitSource(tmp_path / "state" / "git", GitSourceConfig(url, "main", PATH), trust,
                     on_published=lambda: None, interval_s=30)  # fmt: skip


def served(s: GitSource) -> tuple[str | None, str]:
    snapshot = Path(os.path.realpath(s.mirror.link))
    return git_revision(snapshot), (snapshot / "a.yaml").read_text()


def status_text(s: GitSource) -> str:
    return (s.mirror.root / "source.json").read_text()


@pytest.fixture
def argv_seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every git command line the mirror runs (what `ps` would show)."""
    seen: list[str] = []
    real = subprocess.run

    def run(args: list[str], **kw: Any) -> Any:
        seen.append(" ".join(args))
        return real(args, **kw)

    monkeypatch.setattr(gitsync.subprocess, "run", run)
    yield seen


def test_publishes_new_commits_and_follows_a_force_push(
    tmp_path: Path, pki: Pki, argv_seen: list[str]
) -> None:
    up = Upstream(tmp_path / "served" / "fleet")
    first = up.commit({f"{PATH}/a.yaml": "one"})
    with GitHttpServer(tmp_path / "served", pki, password=PASSWORD) as server:
        host = f"127.0.0.1:{server.port}"
        s = source(tmp_path, server.url("fleet"), trust_dir(tmp_path, host, basic(server), pki.ca))
        s.sync_once()
        assert s.failures == 0 and served(s) == (first, "one")
        second = up.commit({f"{PATH}/a.yaml": "two"})
        s.sync_once()
        assert s.last is not None and s.last.published and served(s) == (second, "two")
        rewritten = up.rewrite({f"{PATH}/a.yaml": "rewritten"})
        s.sync_once()
        assert served(s) == (rewritten, "rewritten")
        assert server.refused == 0  # the header is sent up front: no 401 round trip
        pair = base64.b64encode(f"device:{PASSWORD}".encode()).decode()
        assert f"Basic {pair}" in server.seen_auth
    shown = " ".join(argv_seen) + status_text(s)
    assert argv_seen and PASSWORD not in shown and pair not in shown
    bundle = (s.mirror.root / "ca-bundle.pem").read_bytes()
    assert pki.ca.read_bytes() in bundle  # besides the system's CAs, not instead


def test_a_bearer_token_is_sent_as_the_header(tmp_path: Path, pki: Pki) -> None:
    up = Upstream(tmp_path / "served" / "fleet")
    first = up.commit({f"{PATH}/a.yaml": "one"})
    with GitHttpServer(tmp_path / "served", pki, token="tok-123456") as server:
        host = f"127.0.0.1:{server.port}"
        trust = trust_dir(tmp_path, host, ["bearer_token: tok-123456", f"ca_bundle: {pki.ca}"])
        s = source(tmp_path, server.url("fleet"), trust)
        s.sync_once()
        assert s.failures == 0 and served(s)[0] == first
        assert server.seen_auth[0] == "Bearer tok-123456"


def test_a_wrong_password_fails_clearly_and_the_last_checkout_keeps_serving(
    tmp_path: Path, pki: Pki, argv_seen: list[str]
) -> None:
    up = Upstream(tmp_path / "served" / "fleet")
    good = up.commit({f"{PATH}/a.yaml": "good"})
    with GitHttpServer(tmp_path / "served", pki, password=PASSWORD) as server:
        host = f"127.0.0.1:{server.port}"
        s = source(tmp_path, server.url("fleet"), trust_dir(tmp_path, host, basic(server), pki.ca))
        s.sync_once()
        wrong = "not-the-password-42"
        trust_dir(tmp_path, host, basic(server, wrong), pki.ca)
        up.commit({f"{PATH}/a.yaml": "next"})
        s.sync_once()
        assert s.failures == 1 and served(s) == (good, "good")
        error = s.last_error or ""
        assert "refused the credentials" in error and "credentials.yaml" in error
        pair = base64.b64encode(f"device:{wrong}".encode()).decode()
        for text in (error, status_text(s), " ".join(argv_seen)):
            assert wrong not in text and pair not in text and PASSWORD not in text
        assert server.refused >= 1


def test_a_server_that_is_down_fails_then_recovers(tmp_path: Path, pki: Pki) -> None:
    up = Upstream(tmp_path / "served" / "fleet")
    good = up.commit({f"{PATH}/a.yaml": "good"})
    server = GitHttpServer(tmp_path / "served", pki, password=PASSWORD).start()
    try:
        host = f"127.0.0.1:{server.port}"
        s = source(tmp_path, server.url("fleet"), trust_dir(tmp_path, host, basic(server), pki.ca))
        s.sync_once()
        server.stop()
        later = up.commit({f"{PATH}/a.yaml": "later"})
        s.sync_once()
        assert s.failures == 1 and served(s) == (good, "good")
        assert "fetch failed" in (s.last_error or "") and PASSWORD not in status_text(s)
        server.start()
        s.sync_once()
        assert s.failures == 0 and served(s) == (later, "later")
    finally:
        server.stop()


def test_an_untrusted_server_certificate_is_a_clear_tls_error(tmp_path: Path, pki: Pki) -> None:
    up = Upstream(tmp_path / "served" / "fleet")
    up.commit({f"{PATH}/a.yaml": "one"})
    with GitHttpServer(tmp_path / "served", pki, password=PASSWORD) as server:
        host = f"127.0.0.1:{server.port}"
        s = source(tmp_path, server.url("fleet"), trust_dir(tmp_path, host, basic(server)))
        s.sync_once()
        assert s.failures == 1 and s.mirror.current() is None
        assert "certificate is not trusted" in (s.last_error or "")
        assert server.requests == 0


def test_a_client_certificate_from_credentials_yaml(tmp_path: Path, pki: Pki) -> None:
    up = Upstream(tmp_path / "served" / "fleet")
    first = up.commit({f"{PATH}/a.yaml": "one"})
    with GitHttpServer(tmp_path / "served", pki, password=PASSWORD, client_cert=True) as server:
        host = f"127.0.0.1:{server.port}"
        tls = [f"client_cert: {pki.client_cert}", f"client_key: {pki.client_key}"]
        trust = trust_dir(tmp_path, host, [*basic(server), *tls], pki.ca)
        s = source(tmp_path, server.url("fleet"), trust)
        s.sync_once()
        assert s.failures == 0 and served(s) == (first, "one")
        trust_dir(tmp_path, host, basic(server), pki.ca)  # the certificate taken away
        up.commit({f"{PATH}/a.yaml": "two"})
        s.sync_once()
        assert s.failures == 1 and served(s) == (first, "one")
        assert "client certificate" in (s.last_error or "")
        assert server.handshake_failures >= 1


def test_the_environment_does_not_override_the_configured_tls_files(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_SSL_CAINFO", str(tmp_path / "elsewhere.pem"))
    monkeypatch.setenv("GIT_SSL_CERT", str(tmp_path / "other.pem"))
    tls = [f"client_cert: {pki.client_cert}", f"client_key: {pki.client_key}"]
    trust = trust_dir(tmp_path, "git.example.com", tls, pki.ca)
    access = http_access(trust, "https://git.example.com/fleet.git")
    assert access is not None and access.header is None
    s = source(tmp_path, "https://git.example.com/fleet.git", trust)
    s.mirror.http = access
    config = s.mirror.http_config()
    env = s.mirror._env(config)
    assert "GIT_SSL_CAINFO" not in env and "GIT_SSL_CERT" not in env
    keys = {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"]
            for i in range(int(env["GIT_CONFIG_COUNT"]))}  # fmt: skip
    scope = "http.https://git.example.com/."
    assert (keys[scope + "sslCert"], keys[scope + "sslKey"]) == (
        str(pki.client_cert),
        str(pki.client_key),
    )
    assert Path(keys[scope + "sslCAInfo"]).read_bytes().endswith(pki.ca.read_bytes())
    assert "GIT_SSL_CAINFO" in s.mirror._env()  # a local git call keeps its environment
