"""A small fleet for tests: a GitOps repository with a desired dir per ring, real daemons that
report over a real broker, and the `hotswap fleet` commands run as an operator would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.support.daemon import Daemon
from tests.support.kit import REPO, Kit, write_text

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Fleet Operator", "GIT_AUTHOR_EMAIL": "ops@example.com",
    "GIT_COMMITTER_NAME": "Fleet Operator", "GIT_COMMITTER_EMAIL": "ops@example.com",
}  # fmt: skip


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
        env={**os.environ, **GIT_ENV},
    )  # fmt: skip
    return done.stdout.strip()


def fleet_repo(root: Path, kit: Kit, rings: list[str], version: str, releases: list[str]) -> Path:
    """rings/<ring>/classifier.yaml at `version` and releases/classifier/<v>.yaml, committed."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    for ring in rings:
        write_text(root / "rings" / ring / "classifier.yaml", yaml.safe_dump(kit.doc(version)))
    for release in releases:
        write_text(
            root / "releases" / "classifier" / f"{release}.yaml", yaml.safe_dump(kit.doc(release))
        )
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "fleet: classifier v" + version)
    return root


def start_device(
    make: Callable[..., Daemon], repo: Path, ring: str, device: str, broker_url: str,
    state: Path, resync: float = 600,
) -> Daemon:  # fmt: skip
    d = make(repo / "rings" / ring, state)
    env = {"HOTSWAP_DEVICE_ID": device, "HOTSWAP_DEVICE_LABELS": f"ring={ring}"}
    return d.start(env=env, resync=resync, args=["--mqtt-broker", broker_url])


def hotswap(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args], capture_output=True, text=True,
        env={**os.environ, **GIT_ENV, "PYTHONPATH": str(REPO)}, timeout=timeout,
    )  # fmt: skip
