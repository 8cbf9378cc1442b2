"""Desired state from a git-sync style checkout: a `desired` symlink flipped atomically.

git-sync keeps each commit in `root/.worktrees/<sha>`, points `root/desired` at it by creating a
new symlink and renaming it over the old one, then deletes the old worktree. The daemon must
notice the flip through its watcher (the default 30 s resync is far too slow to pass these
tests), read one consistent snapshot, and record the commit in the journal.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import yaml

from tests.support.daemon import Daemon
from tests.support.e2e import VersionWatch, last_seq, select, wait_records, wait_served
from tests.support.kit import Kit, write_text

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        [*GIT, "-C", str(repo), *args], capture_output=True, text=True, timeout=30, check=True
    )
    return out.stdout.strip()


def commit(repo: Path, kit: Kit, version: str) -> str:
    write_text(repo / "classifier.yaml", yaml.safe_dump(kit.doc(version), sort_keys=False))
    git(repo, "add", "classifier.yaml")
    git(repo, "commit", "-q", "-m", f"classifier v{version}")
    return git(repo, "rev-parse", "HEAD")


class GitSync:
    """The layout and the flip that git-sync uses."""

    def __init__(self, repo: Path, root: Path) -> None:
        self.repo = repo
        self.root = root
        self.link = root / "desired"
        self.current: Path | None = None

    def worktree(self, sha: str) -> Path:
        path = self.root / ".worktrees" / sha
        git(self.repo, "worktree", "add", "-q", "--detach", str(path), sha)
        return path

    def flip(self, sha: str) -> None:
        new = self.worktree(sha)
        tmp = self.root / ".desired.tmp"
        os.symlink(os.path.relpath(new, self.root), tmp)
        os.rename(tmp, self.link)  # atomic replacement of the link
        old, self.current = self.current, new
        if old is not None and old != new:
            shutil.rmtree(old)
            git(self.repo, "worktree", "prune")


def setup(tmp_path: Path, kit: Kit) -> tuple[Path, dict[str, str]]:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    shas = {v: commit(repo, kit, v) for v in ("1", "2")}
    return repo, shas


def test_symlink_flip_is_noticed_and_the_commit_journaled(kit: Kit, daemon, tmp_path: Path) -> None:
    repo, shas = setup(tmp_path, kit)
    sync = GitSync(repo, tmp_path / "sync")
    sync.root.mkdir()
    sync.flip(shas["1"])
    d: Daemon = daemon(desired=sync.link)
    d.start()  # default --resync 30: the watcher has to notice every flip
    wait_served(d, "1")
    recs = d.journal_records()
    assert select(recs, step="swap", phase="done", to_version="1")[0]["revision"] == shas["1"]

    for target in ("2", "1"):
        since = last_seq(d)
        flipped = time.monotonic()
        sync.flip(shas[target])
        wait_served(d, target, timeout=10)  # well before any resync
        took = time.monotonic() - flipped
        print(f"\n[git-sync flip] to v{target} serving after {took:.3f}s")
        [swap] = wait_records(
            d, "swap done", step="swap", phase="done", to_version=target, after_seq=since
        )
        assert swap["revision"] == shas[target]
        for rec in select(d.journal_records(), after_seq=since, to_version=target):
            assert rec["revision"] == shas[target], rec
        assert not (sync.root / ".desired.tmp").exists()

    status = d.status()
    assert status["revision"] == shas["1"]
    assert d.alive()


def test_resync_catches_a_change_the_watcher_cannot_see(kit: Kit, daemon, tmp_path: Path) -> None:
    """inotify reports a write only to the directory it was made through: a file changed
    through a hard link elsewhere (and HEAD moved inside .git, outside the checkout) raises no
    event in the watched tree. The periodic resync (1 s here) must pick it up, and record the
    new commit."""
    repo, shas = setup(tmp_path, kit)
    checkout = tmp_path / "sync" / ".worktrees" / "checkout"
    git(repo, "worktree", "add", "-q", "--detach", str(checkout), shas["1"])
    texts = {v: yaml.safe_dump(kit.doc(v), sort_keys=False) for v in ("1", "2")}
    width = max(len(t) for t in texts.values())
    texts = {v: t + "#" * (width - len(t)) + "\n" for v, t in texts.items()}  # same size
    shadow = tmp_path / "elsewhere" / "classifier.yaml"
    shadow.parent.mkdir()
    (checkout / "classifier.yaml").unlink()
    shadow.write_text(texts["1"])
    os.link(shadow, checkout / "classifier.yaml")
    link = tmp_path / "sync" / "desired"
    link.symlink_to(checkout)
    d: Daemon = daemon(desired=link)
    d.start(resync=1.0)
    wait_served(d, "1")

    since = last_seq(d)
    git(checkout, "reset", "-q", "--soft", shas["2"])  # moves HEAD only: .git/worktrees/...
    with open(shadow, "r+b") as f:  # same inode, same size: one in-place write
        f.write(texts["2"].encode())
    wait_served(d, "2", timeout=30)
    [swap] = wait_records(
        d, "swap done", step="swap", phase="done", to_version="2", after_seq=since
    )
    assert swap["revision"] == shas["2"]


def test_bursts_of_writes_are_debounced(kit: Kit, daemon) -> None:
    d: Daemon = daemon()
    kit.write(d.desired, "1")
    d.start()
    wait_served(d, "1")
    since = last_seq(d)
    texts = {v: yaml.safe_dump(kit.doc(v), sort_keys=False) for v in ("1", "2")}
    for i in range(20):  # 20 rapid writes: v1, v2, v1, v2, ... ending at v2
        write_text(d.desired / "classifier.yaml", texts["2" if i % 2 else "1"])
    wait_served(d, "2")
    # settled: v2 stays, nothing more is swapped
    wait_records(d, "retire after v2", step="retire", phase="done", to_version="2", after_seq=since)
    with VersionWatch(d, interval=0.05) as watch:
        time.sleep(1.0)
    watch.assert_only("2")
    swaps = select(d.journal_records(), step="swap", phase="done", after_seq=since)
    print(f"\n[debounce] 20 writes -> {len(swaps)} swap(s)")
    assert 1 <= len(swaps) <= 5, swaps
    assert swaps[-1]["to_version"] == "2"
