"""The built-in git source over `ssh://` against a real OpenSSH server on 127.0.0.1: the trust
dir's deploy key and known hosts are used, and nothing ever waits for a prompt."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reconciler.loop.gitpoll import KNOWN_HOSTS, SSH_KEY, GitSource
from reconciler.source.gitsync import GitSourceConfig
from tests.support.gitrepos import Upstream
from tests.support.gitsync import git_tools_missing
from tests.support.sshd import Sshd, keygen, sshd_missing

pytestmark = pytest.mark.skipif(
    bool(git_tools_missing() or sshd_missing()), reason=str(git_tools_missing() or sshd_missing())
)


@pytest.fixture
def sshd(tmp_path: Path):  # type: ignore[no-untyped-def]
    with Sshd(tmp_path / "sshd") as server:
        yield server


def device_trust(tmp_path: Path, key: Path, known_hosts: str) -> Path:
    trust = tmp_path / "trust"
    trust.mkdir()
    shutil.copyfile(key, trust / SSH_KEY)
    (trust / SSH_KEY).chmod(0o600)  # ssh refuses a private key others can read
    (trust / KNOWN_HOSTS).write_text(known_hosts)
    return trust


def source_for(tmp_path: Path, url: str, trust: Path) -> GitSource:
    config = GitSourceConfig(url, path="devices/line-3")
    return GitSource(tmp_path / "git", config, trust, on_published=lambda: None, interval_s=30)


def test_commits_are_fetched_over_ssh_with_the_trust_dirs_key_and_known_hosts(
    tmp_path: Path, sshd: Sshd
) -> None:
    up = Upstream(tmp_path / "up")
    first = up.commit({"devices/line-3/a.yaml": "one"})
    trust = device_trust(tmp_path, sshd.authorize("device"), sshd.known_hosts_line())
    source = source_for(tmp_path, sshd.url(up.path), trust)
    assert source.sync_once() == 30, source.last_error
    assert source.mirror.current() == first
    assert (source.desired_link / "a.yaml").read_text() == "one"
    second = up.commit({"devices/line-3/a.yaml": "two"})
    assert source.sync_once() == 30, source.last_error
    assert source.mirror.current() == second
    assert (source.desired_link / "a.yaml").read_text() == "two"
    assert f"Accepted publickey for {sshd.user}" in sshd.log.read_text()


def test_a_host_key_other_than_the_known_one_is_refused_and_the_checkout_kept(
    tmp_path: Path, sshd: Sshd
) -> None:
    up = Upstream(tmp_path / "up")
    good = up.commit({"devices/line-3/a.yaml": "one"})
    key = sshd.authorize("device")
    trust = device_trust(tmp_path, key, sshd.known_hosts_line())
    source = source_for(tmp_path, sshd.url(up.path), trust)
    source.sync_once()
    assert source.mirror.current() == good
    # The host now shows a key the device does not know (a man in the middle, or a rebuilt host).
    impostor = keygen(tmp_path / "impostor", "impostor").with_suffix(".pub").read_text().split()
    (trust / KNOWN_HOSTS).write_text(f"[127.0.0.1]:{sshd.port} {impostor[0]} {impostor[1]}\n")
    up.commit({"devices/line-3/a.yaml": "two"})
    delay = source.sync_once()
    assert delay < 30 and source.failures == 1  # retried with backoff
    error = source.last_error or ""
    assert "fetch failed" in error and "host key" in error.lower(), error
    assert source.mirror.current() == good
    assert (source.desired_link / "a.yaml").read_text() == "one"


def test_a_key_the_server_does_not_accept_fails_at_once_without_a_prompt(
    tmp_path: Path, sshd: Sshd
) -> None:
    up = Upstream(tmp_path / "up")
    up.commit({"devices/line-3/a.yaml": "one"})
    stranger = keygen(tmp_path / "stranger", "stranger")  # never authorized
    trust = device_trust(tmp_path, stranger, sshd.known_hosts_line())
    source = source_for(tmp_path, sshd.url(up.path), trust)
    source.sync_once()  # BatchMode: no passphrase or password prompt to hang on
    error = source.last_error or ""
    assert source.failures == 1 and "permission denied" in error.lower(), error
    assert source.mirror.current() is None
