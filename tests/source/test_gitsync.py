"""The built-in git source's mechanics against real repositories (file:// and git daemon)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from reconciler.source.githttp import HttpAccess
from reconciler.source.gitrev import git_revision
from reconciler.source.gitsync import GitMirror, GitSourceConfig, GitSyncError
from tests.support.gitrepos import GitDaemon, Upstream
from tests.support.gitsync import SignedRepo, git_tools_missing

pytestmark = pytest.mark.skipif(bool(git_tools_missing()), reason=str(git_tools_missing()))

PATH = "devices/line-3"


def mirror(tmp_path: Path, url: str, **kw: object) -> GitMirror:
    return GitMirror(tmp_path / "state" / "git", GitSourceConfig(url, "main", PATH), **kw)  # type: ignore[arg-type]


def served(m: GitMirror) -> tuple[str | None, dict[str, str]]:
    """The commit the desired link's snapshot says, and its files."""
    snapshot = Path(os.path.realpath(m.link))
    files = {p.name: p.read_text() for p in snapshot.iterdir() if p.is_file() and p.name != ".git"}
    return git_revision(snapshot), files


def test_publishes_each_new_commit_by_a_flip_and_prunes(tmp_path: Path) -> None:
    up = Upstream(tmp_path / "up")
    first = up.commit({f"{PATH}/a.yaml": "one", "devices/other/b.yaml": "not mine"})
    m = mirror(tmp_path, up.url)
    synced = m.sync()
    assert synced.published and synced.commit == first
    assert served(m) == (first, {"a.yaml": "one"})
    assert m.link.is_symlink() and not os.path.isabs(os.readlink(m.link))
    assert m.sync().published is False  # nothing new: nothing flips
    assert (m.repo / "shallow").is_file()  # a shallow clone by default
    commits = [first]
    for n in range(3):
        commits.append(up.commit({f"{PATH}/a.yaml": f"v{n}"}))
        assert m.sync().published
        assert served(m) == (commits[-1], {"a.yaml": f"v{n}"})
    kept = sorted(p.name for p in m.worktrees.iterdir())
    assert kept == sorted(commits[-2:])  # the serving one and the one before


def test_follows_a_force_push(tmp_path: Path) -> None:
    up = Upstream(tmp_path / "up")
    up.commit({f"{PATH}/a.yaml": "base"})
    up.commit({f"{PATH}/a.yaml": "bad"})
    m = mirror(tmp_path, up.url)
    m.sync()
    rewritten = up.rewrite({f"{PATH}/a.yaml": "good"})
    assert m.sync().commit == rewritten
    assert served(m) == (rewritten, {"a.yaml": "good"})


def test_unreachable_remote_keeps_the_last_good_checkout(tmp_path: Path) -> None:
    up = Upstream(tmp_path / "up")
    good = up.commit({f"{PATH}/a.yaml": "good"})
    m = mirror(tmp_path, up.url)
    m.sync()
    shutil.move(up.path, tmp_path / "gone")
    with pytest.raises(GitSyncError):
        m.sync()
    assert served(m) == (good, {"a.yaml": "good"})


def test_a_damaged_serving_worktree_is_replaced_beside_it(tmp_path: Path) -> None:
    up = Upstream(tmp_path / "up")
    commit = up.commit({f"{PATH}/a.yaml": "good", f"{PATH}/b.yaml": "also"})
    m = mirror(tmp_path, up.url)
    m.sync()
    snapshot = Path(os.path.realpath(m.link))
    (snapshot / "b.yaml").unlink()
    (snapshot / "a.yaml").write_text("edited on the device")
    assert m.sync().published
    assert served(m) == (commit, {"a.yaml": "good", "b.yaml": "also"})
    shutil.rmtree(os.path.realpath(m.link))  # the whole checkout gone
    assert m.sync().published
    assert served(m)[0] == commit


def test_a_broken_local_repository_is_cloned_again(tmp_path: Path) -> None:
    up = Upstream(tmp_path / "up")
    commit = up.commit({f"{PATH}/a.yaml": "good"})
    m = mirror(tmp_path, up.url)
    m.sync()
    (m.repo / "HEAD").write_text("garbage")
    up.commit({f"{PATH}/a.yaml": "next"})
    assert m.sync().commit != commit


def test_over_git_daemon(tmp_path: Path) -> None:
    base = tmp_path / "served"
    up = Upstream(base / "fleet")
    first = up.commit({f"{PATH}/a.yaml": "one"})
    with GitDaemon(base) as server:
        m = mirror(tmp_path, server.url("fleet"))
        assert m.sync().commit == first
        second = up.commit({f"{PATH}/a.yaml": "two"})
        assert m.sync().commit == second
        assert served(m) == (second, {"a.yaml": "two"})
    with pytest.raises(GitSyncError):  # the server stopped: the checkout keeps serving
        m.sync()
    assert served(m)[0] == second


def test_credentials_never_reach_argv_or_errors(tmp_path: Path) -> None:
    header = "Authorization: Bearer s3cr3t"
    http = HttpAccess(header, (header, "s3cr3t"))
    m = mirror(tmp_path, "http://127.0.0.1:9/nothing.git", http=http)
    env = m._env(m.http_config())
    assert "s3cr3t" in " ".join(env.values())  # given to git through GIT_CONFIG_* only
    with pytest.raises(GitSyncError) as raised:
        m.sync()
    assert "s3cr3t" not in str(raised.value)


def test_an_unsigned_commit_is_never_published_under_a_signed_commit_policy(
    tmp_path: Path,
) -> None:
    signed = SignedRepo(tmp_path / "sync")
    trust_dir = tmp_path / "trust"
    trust_dir.mkdir()
    (trust_dir / "desired-allowed-signers").write_text(signed.allowed_signers())
    good = signed.commit({"a.yaml": "signed"}, signer="alice")
    signed.git("branch", "-M", "main")
    m = GitMirror(tmp_path / "git", GitSourceConfig(signed.repo.as_uri(), "main"), trust_dir)
    first = m.sync()
    assert first.published and first.verdict is not None and first.verdict.ok
    unsigned = signed.commit({"a.yaml": "nobody signed this"}, signer=None)
    refused = m.sync()
    assert refused.commit == unsigned and not refused.published
    assert refused.verdict is not None and refused.verdict.reason == "unsigned"
    assert served(m) == (good, {"a.yaml": "signed"})
    assert not (m.worktrees / unsigned).exists()  # never left checked out either
    signed.commit({"a.yaml": "a stranger's"}, signer="mallory")
    assert m.sync().verdict.reason == "untrusted-signer"  # type: ignore[union-attr]
    assert served(m)[0] == good
