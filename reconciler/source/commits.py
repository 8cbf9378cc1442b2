"""Signed desired-state commits: act only on a revision an allowed signer signed (opt-in).

The controller reads desired state through a `CommitGate` (`gate.read(desired_dir)`) instead of
`read_desired`. With no policy in the trust dir it is `read_desired`. With one — a
`desired-allowed-signers` file (git's `gpg.ssh.allowedSignersFile` format, SSH signatures) and/or
a `desired-keyring.gpg` / `.asc` (OpenPGP public keys) — it resolves the git-sync link once and,
for that one snapshot, asks real `git` what `git verify-commit` would say:

1. the snapshot must be a git checkout (`not-git`) with nothing modified, added or ignored
   beside the commit (`dirty`: a file outside the commit is a file nobody signed);
2. HEAD's signature type comes from the commit object (SSH, OpenPGP or X.509), and only the
   matching verifier is configured: an SSH signature is checked against the allowed-signers
   file alone (git's `G`: a principal matched), an OpenPGP one against a private GNUPGHOME
   holding only the keyring (`G` or `U`: good by a key in it), so a key trusted anywhere else
   on the machine never counts;
3. anything else (`unsigned`, `untrusted-signer`, `bad-signature`, `no-policy-for-type`) is
   refused: the gate returns the last accepted desired state (or, before any, one that holds
   everything), with the refusal as a LoadError, so nothing is deployed or unloaded, the
   controller journals it once, and the verdict (commit, signer) goes into status.

A verdict is cached per (snapshot, commit, policy files); the clean check runs every pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reconciler.core.desired import Desired, LoadError
from reconciler.source.load import load_dir, read_desired
from reconciler.source.messages import display_path

ALLOWED_SIGNERS = "desired-allowed-signers"
KEYRINGS = ("desired-keyring.gpg", "desired-keyring.asc")
GIT_TIMEOUT_S = 10
_SIG_TYPES = {
    "-----BEGIN SSH SIGNATURE-----": "ssh",
    "-----BEGIN PGP SIGNATURE-----": "gpg",
    "-----BEGIN SIGNED MESSAGE-----": "x509",
}


@dataclass(frozen=True)
class CommitPolicy:
    allowed_signers: Path | None = None
    keyring: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.allowed_signers is not None or self.keyring is not None

    def stamp(self) -> tuple[Any, ...]:
        """Changes when a policy file does (the cache key of verdicts and of the GNUPGHOME)."""
        return tuple(
            (str(p), p.stat().st_mtime_ns, p.stat().st_size) if p else None
            for p in (self.allowed_signers, self.keyring)
        )


def load_commit_policy(trust_dir: Path) -> CommitPolicy:
    signers = Path(trust_dir) / ALLOWED_SIGNERS
    keyring = next((Path(trust_dir) / n for n in KEYRINGS if (Path(trust_dir) / n).is_file()), None)
    return CommitPolicy(signers if signers.is_file() else None, keyring)


@dataclass(frozen=True)
class CommitVerdict:
    """What the gate decided about one snapshot: `ok`, and for people the commit and signer."""

    ok: bool
    reason: str  # signed | not-git | dirty | unsigned | untrusted-signer | bad-signature | ...
    message: str
    commit: str | None = None
    signer: str | None = None  # the allowed-signers principal or OpenPGP uid; else the key
    key: str | None = None  # the key's fingerprint, when the commit is signed at all

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _git(
    snapshot: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-c", "safe.directory=*", "-C", str(snapshot), *args],
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT_S,
        check=False,
        env=env,
    )


def _signature_type(snapshot: Path, commit: str) -> str | None:
    body = _git(snapshot, "cat-file", "commit", commit).stdout
    for line in body.split("\n\n", 1)[0].splitlines():
        if line.startswith(("gpgsig ", "gpgsig-sha256 ")):
            first = line.partition(" ")[2].strip()
            return _SIG_TYPES.get(first, "unknown")
    return None


def _dirty(snapshot: Path) -> list[str]:
    out = _git(
        snapshot, "status", "--porcelain=v1", "-z", "--untracked-files=all",
        "--ignored=matching", "--", ".",
    )  # fmt: skip
    if out.returncode != 0:
        return ["(git status failed)"]
    return [entry[3:] for entry in out.stdout.split("\0") if entry]


class CommitGate:
    """One per controller: the last accepted desired state, the verdict cache, a GNUPGHOME."""

    def __init__(self, trust_dir: Path) -> None:
        self.trust_dir = Path(trust_dir)
        self.accepted: Desired | None = None
        self.verdict: CommitVerdict | None = None  # the last one (None: no policy)
        self._cache: dict[tuple[Any, ...], CommitVerdict] = {}
        self._gnupg: tuple[tuple[Any, ...], tempfile.TemporaryDirectory[str]] | None = None

    def read(self, desired_dir: Path) -> Desired:
        """Desired state to act on this pass (see the module docstring)."""
        policy = load_commit_policy(self.trust_dir)
        if not policy.enabled:
            self.verdict = None
            return read_desired(desired_dir)
        snapshot = Path(os.path.realpath(desired_dir))
        self.verdict = verdict = self.check(snapshot, policy)
        if verdict.ok:
            self.accepted = load_dir(snapshot, revision=verdict.commit, display_dir=desired_dir)
            return self.accepted
        shown = display_path(desired_dir)
        commit = verdict.commit[:12] if verdict.commit else "?"
        refusal = LoadError(shown, f"{shown}: revision {commit} is not acted on: {verdict.message}")
        base = self.accepted or Desired(readable=False)
        return Desired(base.models, (refusal, *base.errors), base.revision, base.readable)

    def verdict_json(self) -> dict[str, Any] | None:
        """The last verdict for the status snapshot (None when no policy asks for one)."""
        return self.verdict.to_json() if self.verdict else None

    def check(self, snapshot: Path, policy: CommitPolicy) -> CommitVerdict:
        try:
            head = _git(snapshot, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
        except (OSError, subprocess.TimeoutExpired) as e:
            return CommitVerdict(False, "git-failed", f"git could not be run: {e}")
        commit = head.stdout.strip() if head.returncode == 0 else None
        if commit is None or not snapshot.is_dir():
            why = "it is not a git checkout (signed commits are required by the trust dir)"
            return CommitVerdict(False, "not-git", why)
        dirty = _dirty(snapshot)
        if dirty:
            shown = ", ".join(dirty[:3]) + (" ..." if len(dirty) > 3 else "")
            why = f"the checkout has files the commit does not ({shown})"
            return CommitVerdict(False, "dirty", why, commit)
        key = (str(snapshot), commit, policy.stamp())
        if key not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = self._verify(snapshot, commit, policy)
        return self._cache[key]

    def _verify(self, snapshot: Path, commit: str, policy: CommitPolicy) -> CommitVerdict:
        kind = _signature_type(snapshot, commit)
        if kind is None:
            return CommitVerdict(False, "unsigned", f"commit {commit[:12]} is not signed", commit)
        config = ["-c", "gpg.ssh.allowedSignersFile=" + str(policy.allowed_signers or os.devnull)]
        env = None
        if kind == "gpg" and policy.keyring is not None:
            env = {**os.environ, "GNUPGHOME": self._gnupg_home(policy)}
        elif not (kind == "ssh" and policy.allowed_signers is not None):
            why = f"commit {commit[:12]} has a {kind} signature, which this device has no keys for"
            return CommitVerdict(False, "no-policy-for-type", why, commit)
        out = _git(snapshot, *config, "log", "-1", "--format=%G?%x00%GS%x00%GF", commit, env=env)
        status, signer, fingerprint = [*out.stdout.strip("\n").split("\0"), "", "", ""][:3]
        good = status == "G" or (kind == "gpg" and status == "U")
        who = signer or None
        if good:
            return CommitVerdict(True, "signed", f"signed by {who or fingerprint}", commit, who,
                                 fingerprint or None)  # fmt: skip
        reason = "untrusted-signer" if status in ("U", "E") else "bad-signature"
        what = {"E": "by a key this device does not know", "U": "by a key that is not allowed"}
        why = f"commit {commit[:12]} is signed {what.get(status, f'badly (git says {status})')}"
        key = f" ({fingerprint})" if fingerprint else ""
        return CommitVerdict(False, reason, why + key, commit, who, fingerprint or None)

    def _gnupg_home(self, policy: CommitPolicy) -> str:
        """A private GNUPGHOME holding only the keyring (made again when the keyring changes)."""
        stamp = policy.stamp()
        if self._gnupg is None or self._gnupg[0] != stamp:
            home = tempfile.TemporaryDirectory(prefix="hotswap-gnupg-")
            os.chmod(home.name, 0o700)
            gpg = shutil.which("gpg") or "gpg"
            subprocess.run(
                [gpg, "--homedir", home.name, "--batch", "--quiet", "--import", str(policy.keyring)],
                capture_output=True, timeout=GIT_TIMEOUT_S, check=False,
            )  # fmt: skip
            if self._gnupg is not None:
                self._gnupg[1].cleanup()
            self._gnupg = (stamp, home)
        return self._gnupg[1].name
