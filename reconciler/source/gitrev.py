"""The git commit of a desired-state checkout, recorded in the journal beside each change.

Read from the repository's files (HEAD, the ref it names, packed-refs) rather than by running
`git`: this runs on every reconcile pass, and forking a process of the daemon's size costs tens
of milliseconds of the detection budget. `git rev-parse` remains the fallback for layouts the
file reader does not know (reftable, unusual worktrees).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def _git_dir(directory: Path) -> Path | None:
    for candidate in (directory, *directory.parents):
        dot_git = candidate / ".git"
        if dot_git.is_dir():
            return dot_git
        if dot_git.is_file():  # a worktree (git-sync's layout): "gitdir: <path>"
            text = dot_git.read_text().strip()
            if text.startswith("gitdir:"):
                path = Path(text[len("gitdir:") :].strip())
                return path if path.is_absolute() else (candidate / path).resolve()
    return None


def _common_dir(git_dir: Path) -> Path:
    common = git_dir / "commondir"
    if common.is_file():
        path = Path(common.read_text().strip())
        return path if path.is_absolute() else (git_dir / path).resolve()
    return git_dir


def _read_ref(git_dir: Path, ref: str) -> str | None:
    for base in (git_dir, _common_dir(git_dir)):
        loose = base / ref
        if loose.is_file():
            value = loose.read_text().strip()
            return value if _SHA.match(value) else None
    packed = _common_dir(git_dir) / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            sha, _, name = line.partition(" ")
            if name == ref and _SHA.match(sha):
                return sha
    return None


def _from_files(directory: Path) -> str | None:
    git_dir = _git_dir(directory)
    if git_dir is None:
        return None
    head = (git_dir / "HEAD").read_text().strip()
    if _SHA.match(head):  # detached, as git-sync checks out
        return head
    if head.startswith("ref:"):
        return _read_ref(git_dir, head[4:].strip())
    return None


def _from_git(directory: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-c", "safe.directory=*", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    rev = out.stdout.strip()
    return rev if out.returncode == 0 and _SHA.match(rev) else None


def git_revision(directory: Path) -> str | None:
    """HEAD of the repository holding `directory`, or None when it is not a git checkout."""
    try:
        if _git_dir(directory) is None:
            return None
        return _from_files(directory) or _from_git(directory)
    except (OSError, UnicodeDecodeError):
        return _from_git(directory)
