"""The few git operations a rollout makes on a GitOps checkout: commit a file, push, revert.

`hotswap fleet rollout` (`reconciler.cli.fleet_rollout`) is the caller. It runs `git` itself
(the operator's own git, with their identity and credentials) rather than a library: a rollout
is a handful of commits, and the commits must look exactly like ones the operator made.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from reconciler.state.atomic import atomic_write


class GitError(RuntimeError):
    pass


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def is_clean(repo: Path, path: str) -> bool:
    return git(repo, "status", "--porcelain", "--", path) == ""


def write_file(repo: Path, path: str, content: bytes | None) -> None:
    """Put `content` at `path` (None: remove it)."""
    target = repo / path
    if content is None:
        target.unlink(missing_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, content)


def commit(repo: Path, path: str, message: str) -> str:
    """Commit `path` as it is now; the new commit id."""
    git(repo, "add", "-A", "--", path)
    git(repo, "commit", "-q", "-m", message, "--", path)
    return git(repo, "rev-parse", "HEAD")


def push_if_remote(repo: Path) -> bool:
    """Push the current branch when the checkout has a remote; True if it pushed."""
    if not git(repo, "remote"):
        return False
    git(repo, "push", "-q")
    return True
