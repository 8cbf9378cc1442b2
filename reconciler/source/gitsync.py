"""The built-in git source's mechanics: a shallow mirror, one worktree per commit, a symlink flip.

Driven by `reconciler.loop.gitpoll` (the thread that decides when to sync). Laid out as the
git-sync sidecar lays out its root, so the rest of the daemon cannot tell them apart:

    <state>/git/repo                 the clone (`--depth 1` by default; only `ref` fetched)
    <state>/git/worktrees/<commit>   a detached worktree per published commit (<commit>-<n> when
                                     the serving one was damaged and is replaced beside it)
    <state>/git/desired              symlink -> worktrees/<commit>/<path>: the desired dir

A commit is published by writing a temp symlink next to `desired` and renaming it over it, so a
reader resolves either the old snapshot or the new one, never a half. Until the flip nothing a
reader sees has changed; a crash before it leaves an extra worktree that the next sync reuses
or prunes. When the trust dir asks for signed commits, the new worktree is checked by the same
`CommitGate` the controller uses before the flip: an unsigned commit is never published.

Every `git` call has a timeout. Secrets (an `http.extraHeader`) and TLS files for an https remote
(`reconciler.source.githttp`) travel in GIT_CONFIG_* variables of the fetch, never in argv
(visible in `ps`) and never in an error message: git's stderr is cleaned of them before it is
raised.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from reconciler.source.commits import CommitGate, CommitVerdict, load_commit_policy
from reconciler.source.githttp import HttpAccess, hint, without_overrides
from reconciler.state.crashpoint import crashpoint

FETCH_TIMEOUT_S = 120.0
LOCAL_TIMEOUT_S = 30.0
KEEP_WORKTREES = 2  # the one serving and the one before it (a reader may still be in it)


def desired_link(root: Path) -> Path:
    """The symlink the daemon reads desired state through (the controller is built with it)."""
    return Path(root) / "desired"


class GitSyncError(Exception):
    """A git operation failed; the last published commit keeps serving."""


@dataclass(frozen=True)
class GitSourceConfig:
    url: str
    ref: str = "main"
    path: str = ""  # the desired directory inside the repository
    depth: int = 1  # 0: full history


@dataclass(frozen=True)
class Synced:
    commit: str
    published: bool  # False: it was already the one serving
    verdict: CommitVerdict | None = None  # when a signed-commit policy judged it


def _commit_env(environ: dict[str, str], extra_config: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in environ.items() if not k.startswith("GIT_CONFIG_")}
    env["GIT_TERMINAL_PROMPT"] = "0"  # never wait for a password nobody will type
    env["GIT_CONFIG_COUNT"] = str(len(extra_config))
    for i, (key, value) in enumerate(extra_config.items()):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


class GitMirror:
    """One per daemon (the poll thread's); not thread-safe by itself: one sync at a time."""

    def __init__(
        self,
        root: Path,
        config: GitSourceConfig,
        trust_dir: Path | None = None,
        http: HttpAccess | None = None,
    ) -> None:
        self.root = Path(root)
        self.config = config
        self.repo = self.root / "repo"
        self.worktrees = self.root / "worktrees"
        self.link = desired_link(self.root)
        self.trust_dir = trust_dir
        self.http = http  # for an https remote: credentials and TLS files (set per sync)
        self.ssh_command: str | None = None  # GIT_SSH_COMMAND for ssh:// (set per sync)
        self._gate = CommitGate(trust_dir) if trust_dir is not None else None

    # -- git -------------------------------------------------------------------------------
    def _env(self, http_config: dict[str, str] | None = None) -> dict[str, str]:
        environ = without_overrides(dict(os.environ), http_config or {})
        env = _commit_env(environ, {"safe.directory": "*", **(http_config or {})})
        if self.ssh_command:
            env["GIT_SSH_COMMAND"] = self.ssh_command
        return env

    def http_config(self) -> dict[str, str]:
        """The fetch's extra config for an https remote (none for other remotes)."""
        if self.http is None:
            return {}
        try:
            return self.http.git_config(self.config.url, self.root, dict(os.environ))
        except OSError as e:
            raise GitSyncError(f"the CA bundle for git cannot be made: {e}") from e

    def git(
        self,
        *args: str,
        cwd: Path | None = None,
        timeout: float = LOCAL_TIMEOUT_S,
        http_config: dict[str, str] | None = None,
    ) -> str:
        try:
            out = subprocess.run(
                ["git", *args], cwd=cwd or self.repo, capture_output=True, text=True,
                timeout=timeout, check=False, env=self._env(http_config),
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise GitSyncError(f"git {args[0]} took longer than {timeout:.0f} s") from None
        except OSError as e:
            raise GitSyncError(f"git could not be run: {e}") from e
        if out.returncode != 0:
            over_http = args[0] == "fetch" and self.config.url.startswith(("https:", "http:"))
            reading = hint(out.stderr) if over_http else None
            said = f" ({reading})" if reading else ""
            raise GitSyncError(f"git {args[0]} failed{said}: {self._clean(out.stderr)}")
        return out.stdout.strip()

    def _clean(self, text: str) -> str:
        if self.http is not None:
            text = self.http.clean(text)
        return " ".join(text.split())[:500] or "(no message)"

    # -- the mirror ------------------------------------------------------------------------
    def ensure_repo(self) -> None:
        """The local repository, made once (a broken one is made again)."""
        if (self.repo / "HEAD").is_file():
            try:
                self.git("rev-parse", "--git-dir")
                return
            except GitSyncError:
                shutil.rmtree(self.repo, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / "repo.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        self.git("init", "-q", "--bare", str(tmp), cwd=self.root)
        os.replace(tmp, self.repo)
        self.git("remote", "add", "origin", self.config.url)

    def fetch(self) -> str:
        """Fetch `ref` (force: a force push is followed) and return the commit it names now."""
        self.ensure_repo()
        self.git("remote", "set-url", "origin", self.config.url)
        depth = ["--depth", str(self.config.depth)] if self.config.depth > 0 else []
        refspec = f"+{self.config.ref}:refs/hotswap/desired"
        self.git("fetch", "-q", "--no-tags", *depth, "origin", refspec,
                 timeout=FETCH_TIMEOUT_S, http_config=self.http_config())  # fmt: skip
        return self.git("rev-parse", "--verify", "refs/hotswap/desired^{commit}")

    def serving(self) -> Path | None:
        """The worktree `desired` points into now, or None before the first publish."""
        try:
            target = Path(os.readlink(self.link))
        except OSError:
            return None
        parts = target.parts
        if len(parts) < 2 or parts[0] != "worktrees":
            return None
        return self.worktrees / parts[1]

    def current(self) -> str | None:
        """The commit serving now (a worktree is named <commit> or <commit>-<n>)."""
        serving = self.serving()
        return serving.name.partition("-")[0] if serving else None

    def sync(self) -> Synced:
        """Fetch and publish what `ref` names (a healthy current checkout is left alone)."""
        commit = self.fetch()
        serving = self.serving()
        if serving is not None and self.current() == commit and self._healthy(serving):
            return Synced(commit, False, self._gate.verdict if self._gate else None)
        return self.publish(commit)

    def _healthy(self, worktree: Path) -> bool:
        """The worktree is what its commit says (a deleted or edited file makes it unfit)."""
        if not (worktree / ".git").exists():
            return False
        try:
            head = self.git("rev-parse", "HEAD", cwd=worktree)
            dirty = self.git("status", "--porcelain", "--untracked-files=all", cwd=worktree)
        except GitSyncError:
            return False
        return head == worktree.name.partition("-")[0] and not dirty

    def _worktree_for(self, commit: str) -> Path:
        """A healthy checkout of `commit` that is not the one serving: a crash's leftover is
        reused; a damaged serving one is replaced beside it, so `desired` never dangles."""
        worktree = self.worktrees / commit
        if worktree == self.serving():
            worktree = self.worktrees / f"{commit}-{time.time_ns()}"
        if worktree.exists() and self._healthy(worktree):
            return worktree
        self._remove_worktree(worktree)
        self.worktrees.mkdir(parents=True, exist_ok=True)
        self.git("worktree", "add", "-q", "--detach", "--force", str(worktree), commit)
        return worktree

    def publish(self, commit: str) -> Synced:
        worktree = self._worktree_for(commit)
        verdict = self._judge(worktree)
        if verdict is not None and not verdict.ok:
            self._remove_worktree(worktree)
            return Synced(commit, False, verdict)
        crashpoint("git:before-flip")
        self._flip(worktree)
        crashpoint("git:after-flip")
        self.prune()
        return Synced(commit, True, verdict)

    def _judge(self, worktree: Path) -> CommitVerdict | None:
        if self._gate is None or self.trust_dir is None:
            return None
        policy = load_commit_policy(self.trust_dir)
        if not policy.enabled:
            return None
        self._gate.verdict = verdict = self._gate.check(worktree.resolve(), policy)
        return verdict

    def _flip(self, worktree: Path) -> None:
        target = os.path.join("worktrees", worktree.name, self.config.path.strip("/"))
        target = target.rstrip("/")
        tmp = self.root / ".desired.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, self.link)
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _remove_worktree(self, worktree: Path) -> None:
        try:
            self.git("worktree", "remove", "--force", str(worktree))
        except GitSyncError:
            shutil.rmtree(worktree, ignore_errors=True)
        with contextlib.suppress(GitSyncError):
            self.git("worktree", "prune")

    def prune(self, keep: int = KEEP_WORKTREES) -> list[str]:
        """Remove worktrees but the serving one and the newest others (by mtime)."""
        if not self.worktrees.is_dir():
            return []
        serving = self.serving()
        others = sorted(
            (p for p in self.worktrees.iterdir() if p != serving),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        removed = []
        for stale in others[max(0, keep - 1) :]:
            self._remove_worktree(stale)
            removed.append(stale.name)
        return removed
