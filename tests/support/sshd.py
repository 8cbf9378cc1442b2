"""A real OpenSSH server on 127.0.0.1 and a free port, for git over `ssh://`.

    with Sshd(tmp_path / "sshd") as server:          # its own host key, config and log
        key = server.authorize("device")             # a client key it accepts
        url = server.url(upstream.path)              # ssh://USER@127.0.0.1:PORT/abs/path
        server.known_hosts_line()                    # what a device's known-hosts file holds

Runs as the user running the tests and lets only that user in, by key only (no password, no
PAM). Started by the test and stopped by the pid it started.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests.support.daemon import free_port
from tests.support.processes import terminate

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def sshd_missing() -> str | None:
    if not os.access(SSHD, os.X_OK):
        return "sshd is not installed (openssh-server)"
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return "ssh or ssh-keygen is not installed"
    return None


def keygen(path: Path, comment: str) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return path


class Sshd:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.user = getpass.getuser()
        self.host_key = keygen(root / "host_ed25519", "test-host")
        self.authorized = root / "authorized_keys"
        self.authorized.touch(mode=0o600)
        self.log = root / "sshd.log"
        self.config = root / "sshd_config"
        self.config.write_text(
            f"ListenAddress 127.0.0.1\nPort {self.port}\nHostKey {self.host_key}\n"
            f"AuthorizedKeysFile {self.authorized}\nPidFile {root / 'sshd.pid'}\n"
            "StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UsePAM no\nPermitRootLogin prohibit-password\n"
            f"AllowUsers {self.user}\nLogLevel VERBOSE\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def authorize(self, name: str) -> Path:
        """A new client key, accepted from now on; returns its private key file."""
        key = keygen(self.root / name, name)
        with self.authorized.open("a") as f:
            f.write(key.with_suffix(".pub").read_text())
        return key

    def url(self, repo: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{repo.resolve()}"

    def known_hosts_line(self) -> str:
        key = self.host_key.with_suffix(".pub").read_text().split()
        return f"[127.0.0.1]:{self.port} {key[0]} {key[1]}\n"

    def __enter__(self) -> Sshd:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
        log = self.log.open("ab")
        # -D: stay in the foreground, so the pid started is the server's; -e: log to stderr.
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError(f"sshd did not listen within 10 s: {self.log.read_text()}")

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        terminate(self.proc)
        self.proc = None
