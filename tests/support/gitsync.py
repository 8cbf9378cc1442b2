"""A desired-state repository laid out as git-sync lays it out, with SSH-signed commits.

`SignedRepo(root)` makes SSH keys with `ssh-keygen` (an allowed signer "alice" and a stranger
"mallory"), a repository `root/repo`, and `root/desired`: a symlink to a detached worktree of
the commit last published, flipped atomically to a new worktree on `publish` as git-sync does.
`allowed_signers()` is the line a device's trust dir would hold for alice.

    repo = SignedRepo(tmp_path / "sync")
    repo.publish({"classifier.yaml": text}, signer="alice")   # or signer=None: unsigned
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SIGNERS = ("alice", "mallory")


def git_tools_missing(*more: str) -> str | None:
    for tool in ("git", "ssh-keygen", *more):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


class SignedRepo:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.repo = root / "repo"
        self.link = root / "desired"
        root.mkdir(parents=True, exist_ok=True)
        for who in SIGNERS:
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", who, "-f",
                 str(root / who)],
                check=True,
            )  # fmt: skip
        self.git("init", "-q", str(self.repo), cwd=root)
        self.git("config", "user.name", "Alice")
        self.git("config", "user.email", "alice@example.com")
        self.git("config", "gpg.format", "ssh")
        self.published = 0
        self.gpg_homes: dict[str, Path] = {}

    def git(self, *args: str, cwd: Path | None = None) -> str:
        out = subprocess.run(
            ["git", *args], cwd=cwd or self.repo, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()

    def allowed_signers(self, who: str = "alice") -> str:
        key = (self.root / f"{who}.pub").read_text().strip()
        return f"{who}@example.com {key}\n"

    def gpg_key(self, who: str) -> str:
        """An OpenPGP key for `who` in its own GNUPGHOME; returns the armored public key."""
        # A short path under /tmp: gpg-agent's socket lives in the homedir, and a Unix socket
        # path has 108 bytes at most (a pytest worker's tmp_path can be longer).
        home = Path(tempfile.mkdtemp(prefix=f"gpg-{who}-"))
        self.gpg_homes[who] = home
        subprocess.run(
            ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
             "--passphrase", "", "--quick-gen-key", f"{who} <{who}@example.com>", "ed25519",
             "sign", "never"],
            check=True, capture_output=True,
        )  # fmt: skip
        return subprocess.run(
            ["gpg", "--homedir", str(home), "--export", "--armor", f"{who}@example.com"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip

    def stop_gpg_agents(self) -> None:
        """The agents `gpg` started to sign: stopped through their own homedir."""
        for home in self.gpg_homes.values():
            subprocess.run(
                ["gpgconf", "--homedir", str(home), "--kill", "all"], check=False,
                capture_output=True,
            )  # fmt: skip
            shutil.rmtree(home, ignore_errors=True)

    def commit(self, files: dict[str, str], signer: str | None, gpg: bool = False) -> str:
        for name, text in files.items():
            (self.repo / name).write_text(text)
        self.git("add", "-A")
        message = ["-q", "--allow-empty", "-m", f"desired state {self.published + 1}"]
        if signer is None:
            self.git("commit", *message)
        elif gpg:
            home = self.gpg_homes[signer]
            subprocess.run(
                ["git", "-c", "gpg.format=openpgp", "-c", f"user.signingkey={signer}@example.com",
                 "commit", "-S", *message],
                cwd=self.repo, check=True, capture_output=True,
                env={**os.environ, "GNUPGHOME": str(home)},
            )  # fmt: skip
        else:
            self.git("-c", f"user.signingkey={self.root / signer}", "commit", "-S", *message)
        return self.git("rev-parse", "HEAD")

    def publish(self, files: dict[str, str], signer: str | None, gpg: bool = False) -> str:
        """Commit `files`, check the commit out in a new worktree, flip `desired` to it."""
        commit = self.commit(files, signer, gpg)
        self.published += 1
        worktree = self.root / f"rev-{self.published}-{commit[:8]}"
        self.git("worktree", "add", "-q", "--detach", str(worktree), commit)
        tmp = self.root / ".desired.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(worktree.name, tmp)
        os.replace(tmp, self.link)
        return commit
