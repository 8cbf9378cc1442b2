"""`hotswap run --git`: the daemon pulls desired state itself, and a crash mid-flip is survived.

A real daemon follows a real repository over file://; each commit is swapped in and journaled
with its id. The daemon is killed (SIGKILL, from a crash point) between checking a new commit
out and flipping the link to it, and restarted with the remote gone: it serves the last good
commit, says the fetch is failing, and takes the new commit once the remote is back.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from tests.support.daemon import Daemon
from tests.support.e2e import select, wait_served
from tests.support.git_http import GitHttpServer
from tests.support.gitrepos import Upstream
from tests.support.gitsync import git_tools_missing
from tests.support.kit import Kit
from tests.support.tls import make_pki

pytestmark = pytest.mark.skipif(bool(git_tools_missing()), reason=str(git_tools_missing()))

PATH = "devices/line-3"


def push(up: Upstream, kit: Kit, version: str) -> str:
    return up.commit({f"{PATH}/classifier.yaml": yaml.safe_dump(kit.doc(version), sort_keys=False)})


def test_git_source_swaps_journals_and_survives_a_crash_during_the_flip(
    kit: Kit, daemon, tmp_path: Path
) -> None:
    up = Upstream(tmp_path / "up")
    first = push(up, kit, "1")
    d: Daemon = daemon(desired=tmp_path / "unused")
    d.desired.rmdir()  # `hotswap status` then reads the git source's link, as the daemon does
    git_args = ["--git", up.url, "--git-path", PATH, "--git-interval", "0.3",
                "--device-id", "cam-07", "--label", "ring=canary"]  # fmt: skip
    d.start(args=git_args, env={"HOTSWAP_CRASHPOINT": "git:before-flip@2"})
    wait_served(d, "1")
    status = d.status()
    assert status["device"] == {"id": "cam-07", "labels": {"ring": "canary"}}
    assert status["revision"] == first and status["git"]["serving"] == first
    assert select(d.journal_records(), step="swap", phase="done")[0]["revision"] == first

    second = push(up, kit, "2")
    assert d.wait_exit(timeout=60) != 0  # killed at the crash point, before the flip
    link = d.state / "git" / "desired"
    assert first in os.readlink(link) and (d.state / "git" / "worktrees" / second).is_dir()

    shutil.move(up.path, tmp_path / "away")  # the remote is gone when the device comes back
    d.start(args=git_args)
    wait_served(d, "1")
    d.wait_for(lambda: (d.status().get("git") or {}).get("failures", 0) >= 1, what="fetch failure")
    assert d.served_version() == "1" and first in os.readlink(link)

    shutil.move(tmp_path / "away", up.path)
    wait_served(d, "2", timeout=60)
    swaps = select(d.journal_records(), step="swap", phase="done", to_version="2")
    assert swaps and swaps[0]["revision"] == second


def test_git_source_over_https_with_the_trust_dirs_credentials_and_ca(
    kit: Kit, daemon, tmp_path: Path
) -> None:
    """The daemon pulls from a real git smart-HTTP server over TLS (a private CA, Basic auth),
    with both from credentials.yaml in its trust dir; the password is shown nowhere."""
    pki = make_pki(tmp_path / "pki")
    up = Upstream(tmp_path / "served" / "fleet")
    push(up, kit, "1")
    password = "s3cr3t-Pa55"
    with GitHttpServer(tmp_path / "served", pki, password=password) as server:
        d: Daemon = daemon(desired=tmp_path / "unused")
        d.desired.rmdir()
        (d.state / "trust" / "credentials.yaml").write_text(
            f"ca_bundle: {pki.ca}\nhosts:\n  127.0.0.1:{server.port}:\n"
            f"    username: {server.username}\n    password: {password}\n"
        )
        d.start(args=["--git", server.url("fleet"), "--git-path", PATH, "--git-interval", "0.5"])
        wait_served(d, "1")
        second = push(up, kit, "2")
        wait_served(d, "2", timeout=60)
        assert d.status()["git"]["serving"] == second
        shown = d.log_tail(2000) + (d.state / "git" / "source.json").read_text()
        assert password not in shown and server.requests > 0
