"""git_revision reads HEAD from the files, and agrees with git in every layout we meet."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reconciler.source.gitrev import git_revision


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main", *args],
        cwd=cwd, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "desired").mkdir()
    (root / "desired" / "a.yaml").write_text("a: 1\n")
    git(root, "add", ".")
    git(root, "commit", "-qm", "one")
    return root


def test_not_a_checkout(tmp_path: Path) -> None:
    assert git_revision(tmp_path) is None


def test_branch_head_loose_and_packed(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    assert git_revision(repo / "desired") == head
    git(repo, "pack-refs", "--all")
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()
    assert git_revision(repo / "desired") == head


def test_detached_worktree_as_git_sync_lays_it_out(repo: Path) -> None:
    (repo / "desired" / "a.yaml").write_text("a: 2\n")
    git(repo, "commit", "-qam", "two")
    second = git(repo, "rev-parse", "HEAD")
    first = git(repo, "rev-parse", "HEAD~1")
    worktree = repo.parent / "wt"
    git(repo, "worktree", "add", "-q", "--detach", str(worktree), first)
    assert git_revision(worktree / "desired") == first
    assert git_revision(repo) == second
