"""The git source's thread: a wake fetches at once, a failure backs off and keeps serving."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from reconciler.loop import gitpoll
from reconciler.loop.gitpoll import GitSource, http_access, ssh_command
from reconciler.source.gitsync import GitSourceConfig
from tests.support.gitrepos import Upstream
from tests.support.gitsync import git_tools_missing

pytestmark = pytest.mark.skipif(bool(git_tools_missing()), reason=str(git_tools_missing()))


def wait_until(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_wake_fetches_at_once_and_publishing_wakes_the_controller(tmp_path: Path) -> None:
    up = Upstream(tmp_path / "up")
    first = up.commit({"a.yaml": "one"})
    published = threading.Event()
    source = GitSource(tmp_path / "git", GitSourceConfig(up.url), tmp_path / "trust",
                       on_published=published.set, interval_s=600)  # fmt: skip
    source.start()
    try:
        wait_until(published.is_set)
        assert source.mirror.current() == first
        published.clear()
        second = up.commit({"a.yaml": "two"})
        source.wake(second[:12])  # a sync message, with the commit it announces
        wait_until(published.is_set)  # long before the 600 s poll
        assert source.mirror.current() == second
        status = source.status()
        assert status["serving"] == second and status["failures"] == 0
    finally:
        source.stop()


def test_a_failing_fetch_backs_off_and_recovers(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    up = Upstream(tmp_path / "up")
    good = up.commit({"a.yaml": "good"})
    source = GitSource(tmp_path / "git", GitSourceConfig(up.url), tmp_path / "trust",
                       on_published=lambda: None, interval_s=30)  # fmt: skip
    assert source.sync_once() == 30
    monkeypatch.setattr(gitpoll, "backoff_delay", lambda attempts: 2.0**attempts)
    shutil.move(up.path, tmp_path / "away")
    delays = [source.sync_once() for _ in range(3)]
    assert delays == [2.0, 4.0, 8.0] and source.failures == 3
    assert source.mirror.current() == good  # still serving the last good checkout
    assert "fetch failed" in (source.status()["last_error"] or "")
    shutil.move(tmp_path / "away", up.path)
    assert source.sync_once() == 30 and source.failures == 0


def test_an_announced_commit_not_yet_fetched_is_looked_for_again_soon(tmp_path: Path) -> None:
    up = Upstream(tmp_path / "up")
    up.commit({"a.yaml": "one"})
    source = GitSource(tmp_path / "git", GitSourceConfig(up.url), tmp_path / "trust",
                       on_published=lambda: None, interval_s=30)  # fmt: skip
    source.wake("0123456789ab")  # not on the ref (yet)
    assert source.sync_once() == gitpoll.EXPECTED_RETRY_S


def test_https_credentials_from_the_trust_dir(tmp_path: Path) -> None:
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "credentials.yaml").write_text(
        "hosts:\n  git.example.com:\n    username: device\n    password: hunter2\n"
    )
    access = http_access(trust, "https://git.example.com/fleet.git")
    assert access is not None and (access.header or "").startswith("Authorization: Basic ")
    assert "hunter2" in access.secrets and "hunter2" not in repr(access)
    assert http_access(trust, "https://other.example.com/fleet.git") is None
    assert http_access(trust, "ssh://git.example.com/fleet.git") is None


def test_ssh_uses_the_trust_dirs_key_and_known_hosts_and_never_prompts(tmp_path: Path) -> None:
    trust = tmp_path / "trust"
    trust.mkdir()
    assert ssh_command(trust, "https://git.example.com/x.git") is None
    assert "BatchMode=yes" in (ssh_command(trust, "git@git.example.com:fleet.git") or "")
    (trust / "git-ssh-key").write_text("not really a key\n")
    (trust / "git-known-hosts").write_text("")
    command = ssh_command(trust, "ssh://git@127.0.0.1:1/fleet.git") or ""
    assert f"-i {trust / 'git-ssh-key'}" in command and "StrictHostKeyChecking=yes" in command
    source = GitSource(tmp_path / "git", GitSourceConfig("ssh://git@127.0.0.1:1/fleet.git"),
                       trust, on_published=lambda: None, interval_s=30)  # fmt: skip
    assert source.sync_once() <= 30 and source.failures == 1  # refused port: no prompt, no hang
    assert source.mirror._env()["GIT_SSH_COMMAND"] == command
