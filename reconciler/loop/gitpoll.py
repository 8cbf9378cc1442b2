"""The built-in git source's thread: sync every `interval`, at once on `wake()`, back off on failure.

Built by the daemon's wiring (`reconciler.cli.daemon`) when `hotswap run --git URL` is given;
the mirror (`reconciler.source.gitsync`) publishes each new commit by flipping the desired-dir
symlink, and this thread then wakes the controller, which reads desired state through that
symlink exactly as it reads a git-sync root. A failed fetch changes nothing that serves: the
last good checkout stays published, and the next try comes after `backoff_delay` (doubling,
jittered), or at once when someone calls `wake()` (an MQTT sync message).

`wake(commit)` is the one entry point for other threads; a commit id only makes the next
syncs look again shortly if the fetched ref does not contain it yet (the push may not have
reached the git host this device reads from) — the ref, never the message, decides what is
served.
"""

from __future__ import annotations

import json
import shlex
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import structlog

from reconciler.loop.schedule import backoff_delay
from reconciler.ops.credentials import CredentialsError, load_credentials
from reconciler.source.githttp import HttpAccess
from reconciler.source.gitsync import GitMirror, GitSourceConfig, GitSyncError, Synced
from reconciler.state.atomic import atomic_write

log = structlog.get_logger("hotswap.git")

EXPECTED_RETRY_S = 2.0  # a woken sync that did not find the announced commit looks again
EXPECTED_TRIES = 5
STATUS_FILE = "source.json"  # <state>/git/source.json, read by `hotswap status`


def http_access(trust_dir: Path, url: str) -> HttpAccess | None:
    """What git needs for an http(s) URL from the trust dir's credentials.yaml: the host's
    token or username/password as an `Authorization` header, its (else the global) CA bundle,
    its client certificate. CredentialsError when the file cannot be used."""
    if urlparse(url).scheme not in ("http", "https"):
        return None
    creds = load_credentials(trust_dir)
    access = creds.for_url(url)
    ca_bundle = (access.ca_bundle if access else None) or creds.ca_bundle
    if access is None:
        return HttpAccess(ca_bundle=ca_bundle) if ca_bundle else None
    header: str | None = None
    secrets: tuple[str, ...] = ()
    if access.bearer_token is not None:
        token = access.bearer_token.reveal()
        header = "Authorization: Bearer " + token
        secrets = (header, token)
    elif access.basic and access.password is not None:
        header = "Authorization: " + access.basic
        secrets = (header, access.basic.partition(" ")[2], access.password.reveal())
    return HttpAccess(header, secrets, ca_bundle, access.client_cert, access.client_key)


SSH_KEY = "git-ssh-key"  # in the trust dir: the device's deploy key for ssh:// remotes
KNOWN_HOSTS = "git-known-hosts"  # ... and the hosts it may talk to (else ssh's own files)


def ssh_command(trust_dir: Path, url: str) -> str | None:
    """GIT_SSH_COMMAND for an ssh:// (or scp-like) URL: never a prompt, the trust dir's key and
    known hosts when it has them; None for other schemes (git's default ssh then)."""
    scheme = urlparse(url).scheme
    if scheme not in ("ssh", "git+ssh") and not (scheme == "" and ":" in url):
        return None
    parts = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]
    key, known = Path(trust_dir) / SSH_KEY, Path(trust_dir) / KNOWN_HOSTS
    if key.is_file():
        parts += ["-i", shlex.quote(str(key)), "-o", "IdentitiesOnly=yes"]
    if known.is_file():
        parts += ["-o", "StrictHostKeyChecking=yes", "-o",
                  shlex.quote(f"UserKnownHostsFile={known}")]  # fmt: skip
    return " ".join(parts)


class GitSource:
    def __init__(
        self,
        root: Path,
        config: GitSourceConfig,
        trust_dir: Path,
        on_published: Callable[[], None],
        interval_s: float = 30.0,
    ) -> None:
        self.config = config
        self.trust_dir = trust_dir
        self.mirror = GitMirror(root, config, trust_dir)
        self.on_published = on_published
        self.interval_s = interval_s
        self.failures = 0
        self.last: Synced | None = None
        self.last_error: str | None = None
        self._expected: str | None = None
        self._expected_tries = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="hotswap-git", daemon=True)

    @property
    def desired_link(self) -> Path:
        return self.mirror.link

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def wake(self, commit: str | None = None) -> None:
        """Fetch now (thread-safe); `commit`: the commit a message announced, if it said one."""
        with self._lock:
            if commit:
                self._expected, self._expected_tries = commit.strip().lower(), 0
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            delay = self.sync_once()
            self._wake.wait(timeout=delay)

    def sync_once(self) -> float:
        """One sync; the seconds until the next."""
        self.mirror.ssh_command = ssh_command(self.trust_dir, self.config.url)
        try:
            self.mirror.http = http_access(self.trust_dir, self.config.url)
            synced = self.mirror.sync()
        except (GitSyncError, CredentialsError, OSError) as e:
            self.failures += 1
            delay = min(self.interval_s, backoff_delay(self.failures))
            if str(e) != self.last_error:
                log.error("git.sync-failed", url=_shown(self.config.url), error=str(e),
                          attempt=self.failures, retry_in_s=round(delay, 1))  # fmt: skip
            self.last_error = str(e)
            self._write_status()
            return delay
        if self.failures:
            log.info("git.sync-recovered", after_failures=self.failures, commit=synced.commit)
        self.failures, self.last_error, self.last = 0, None, synced
        self._report(synced)
        self._write_status()
        if synced.published:
            self.on_published()
        return self._next_delay(synced.commit)

    def _report(self, synced: Synced) -> None:
        verdict = synced.verdict
        if verdict is not None and not verdict.ok:
            log.error("git.commit-refused", commit=synced.commit, reason=verdict.reason,
                      error=verdict.message)  # fmt: skip
        elif synced.published:
            log.info("git.published", commit=synced.commit, ref=self.config.ref,
                     path=self.config.path or ".")  # fmt: skip

    def status(self) -> dict[str, Any]:
        verdict = self.last.verdict if self.last else None
        return {
            "url": _shown(self.config.url),
            "ref": self.config.ref,
            "path": self.config.path,
            "desired": str(self.mirror.link),
            "serving": self.mirror.current(),
            "fetched": self.last.commit if self.last else None,
            "refused": verdict.to_json() if verdict is not None and not verdict.ok else None,
            "failures": self.failures,
            "last_error": self.last_error,
        }

    def _write_status(self) -> None:
        body = json.dumps(self.status(), indent=2, sort_keys=True).encode()
        try:
            atomic_write(self.mirror.root / STATUS_FILE, body)
        except OSError as e:
            log.warning("git.status-write-failed", error=str(e))

    def _next_delay(self, commit: str) -> float:
        with self._lock:
            expected = self._expected
            if expected is None or commit.startswith(expected):
                self._expected = None
                return self.interval_s
            self._expected_tries += 1
            if self._expected_tries >= EXPECTED_TRIES:
                log.warning("git.announced-commit-not-found", commit=expected, ref=commit)
                self._expected = None
                return self.interval_s
        return EXPECTED_RETRY_S


def _shown(url: str) -> str:
    """The URL without any user:password part (logs never carry one)."""
    parsed = urlparse(url)
    if parsed.password is None and parsed.username is None:
        return url
    return parsed._replace(netloc=parsed.hostname or "").geturl()
