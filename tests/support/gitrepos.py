"""Real git repositories for the built-in git source's tests: an upstream, and `git daemon`.

    up = Upstream(tmp_path / "up")              # a repository with a branch `main`
    first = up.commit({"devices/line-3/a.yaml": "..."})
    with GitDaemon(tmp_path) as server:         # git:// on 127.0.0.1, a free port
        url = server.url("up")

`GitDaemon` is started by the test and stopped by the pid it started.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests.support.daemon import free_port
from tests.support.processes import terminate


def run_git(*args: str, cwd: Path) -> str:
    out = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=30
    )
    return out.stdout.strip()


class Upstream:
    """A non-bare repository on branch `main` that tests commit to (and force-push by reset)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        run_git("init", "-q", "-b", "main", str(path), cwd=path.parent)
        for key, value in (("user.name", "Ops"), ("user.email", "ops@example.com"),
                           ("receive.denyCurrentBranch", "ignore")):  # fmt: skip
            run_git("config", key, value, cwd=path)

    @property
    def url(self) -> str:
        return self.path.resolve().as_uri()

    def git(self, *args: str) -> str:
        return run_git(*args, cwd=self.path)

    def commit(self, files: dict[str, str | None], message: str = "desired state") -> str:
        """Write (or, for None, delete) files and commit; returns the commit id."""
        for name, text in files.items():
            path = self.path / name
            if text is None:
                path.unlink()
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def rewrite(self, files: dict[str, str | None]) -> str:
        """History rewritten as a force push leaves it: HEAD~1 plus a different commit."""
        self.git("reset", "-q", "--hard", "HEAD~1")
        return self.commit(files, "rewritten")


class GitDaemon:
    """`git daemon` serving every repository under `base` at git://127.0.0.1:<port>/<name>."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def start(self) -> GitDaemon:
        self.proc = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={self.base}",
             "--listen=127.0.0.1", f"--port={self.port}", str(self.base)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError("git daemon did not start listening")

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None

    def __enter__(self) -> GitDaemon:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
