"""The git commit of a desired-state checkout, recorded in the journal beside each change."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_revision(directory: Path) -> str | None:
    """HEAD of the repository holding `directory`, or None when it is not a git checkout."""
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
    return rev if out.returncode == 0 and len(rev) in (40, 64) else None
