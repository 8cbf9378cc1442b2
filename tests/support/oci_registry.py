"""A real OCI registry for tests: Debian's `docker-registry` (CNCF distribution) on 127.0.0.1.

`OciRegistry` writes a config into a temp dir (filesystem storage there, htpasswd auth for one
user), starts `/usr/bin/docker-registry serve` on a free port, waits until `/v2/` answers, and
stops the process it started by its pid. The htpasswd needs bcrypt (the only hash distribution
accepts): from the `bcrypt` module when installed, else Apache's `htpasswd`, else the C
library's crypt(3) through the stdlib `crypt` module (libxcrypt does bcrypt); `bcrypt_hash`
says None when none is there and the tests skip. `CutProxy` forwards TCP to it and cuts the
first few responses to a blob after some bytes, to exercise resume.

    with OciRegistry(tmp_path) as reg:
        reg.url, reg.user, reg.password, reg.requests()
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import httpx

from tests.support.daemon import free_port

REGISTRY_BIN = "/usr/bin/docker-registry"
USER, PASSWORD = "publisher", "s3cret-registry-pass"


def bcrypt_hash(password: str) -> str | None:
    """A bcrypt hash of `password` from whatever this machine has, or None.

    At the lowest cost (2^4 rounds): the registry checks it on every request."""
    with contextlib.suppress(ImportError):
        bcrypt: Any = importlib.import_module("bcrypt")
        return str(bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode())
    if shutil.which("htpasswd"):
        out = subprocess.run(
            ["htpasswd", "-nbB", "-C", "4", "u", password],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip().partition(":")[2]
    with warnings.catch_warnings(), contextlib.suppress(ImportError, OSError):
        warnings.simplefilter("ignore", DeprecationWarning)
        crypt: Any = importlib.import_module("crypt")
        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
        if isinstance(hashed, str) and hashed.startswith("$2"):
            return hashed
    return None


def registry_available() -> str | None:
    """Why the real-registry tests cannot run here, or None when they can."""
    if not os.access(REGISTRY_BIN, os.X_OK):
        return f"{REGISTRY_BIN} is not installed (apt-get install docker-registry)"
    if bcrypt_hash("x") is None:
        return "no bcrypt for the htpasswd file (bcrypt module, htpasswd or crypt(3))"
    return None


class OciRegistry:
    """`token`: a TokenServer to trust (bearer token auth) instead of the htpasswd file."""

    def __init__(
        self, root: Path, user: str = USER, password: str = PASSWORD, token: Any = None
    ) -> None:
        self.root = root
        self.token = token
        self.user, self.password = user, password
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.log = root / "registry.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _config(self) -> Path:
        hashed = bcrypt_hash(self.password)
        assert hashed is not None
        (self.root / "htpasswd").write_text(f"{self.user}:{hashed}\n")
        config = self.root / "config.yml"
        auth = f"{{htpasswd: {{realm: hotswap-test, path: {self.root / 'htpasswd'}}}}}"
        if self.token is not None:
            auth = self.token.auth_config()
        config.write_text(
            "version: 0.1\nlog: {level: info, accesslog: {disabled: false}}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.root / 'data'}}}}}\n"
            f"http: {{addr: '{self.host}', secret: hotswap-test}}\n"
            f"auth: {auth}\n"
        )
        return config

    def __enter__(self) -> OciRegistry:
        self.root.mkdir(parents=True, exist_ok=True)
        config = self._config()
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/v2/", timeout=1).status_code == 401:
                    return self
            time.sleep(0.05)
        self.__exit__()
        raise AssertionError(f"docker-registry did not start: {self.log.read_text()}")

    def __exit__(self, *_: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def requests(self, needle: str = "") -> list[str]:
        """The access-log lines (`"GET /v2/... HTTP/1.1" 200 ...`) containing `needle`."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [x for x in lines if '"' in x and " /v2/" in x and needle in x]

    def blob_file(self, digest: str) -> Path:
        hexd = digest.removeprefix("sha256:")
        return self.root / f"data/docker/registry/v2/blobs/sha256/{hexd[:2]}/{hexd}/data"


class CutProxy:
    """TCP 127.0.0.1:port -> target; the first `cuts` connections that ask for a path with
    `needle` are closed after `after` response bytes."""

    def __init__(self, target_port: int, needle: bytes, after: int, cuts: int = 1) -> None:
        self.target_port = target_port
        self.needle, self.after, self.cuts = needle, after, cuts
        self.port = free_port()
        self.cut = 0
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> CutProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            budget: list[int | None] = [None]  # response bytes left before the cut, once armed
            pipe_in = threading.Thread(
                target=self._pipe, args=(client, upstream, budget, True), daemon=True
            )
            pipe_in.start()
            threading.Thread(
                target=self._pipe, args=(upstream, client, budget, False), daemon=True
            ).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, budget: list, request: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if request and self.needle in data and self.cut < self.cuts:
                    self.cut += 1
                    budget[0] = self.after
                if not request and budget[0] is not None:
                    if len(data) >= budget[0]:
                        dst.sendall(data[: budget[0]])
                        break
                    budget[0] -= len(data)
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
