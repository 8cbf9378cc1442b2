"""One real `hotswap run` process on a free loopback port, driven as an operator would."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.kit import REPO, Kit, infer_body, write_text
from tests.support.processes import terminate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """One `hotswap run` process on a free loopback port."""

    def __init__(
        self, desired: Path, state: Path, log_path: Path, hotswap: list[str] | None = None
    ) -> None:
        # The command: this checkout's (`python -m reconciler`), or an installed `hotswap`
        # (then nothing of the checkout is put on its path).
        self.hotswap = hotswap or [sys.executable, "-m", "reconciler"]
        self.path_env = {} if hotswap else {"PYTHONPATH": str(REPO)}
        self.desired = desired
        self.state = state
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_port = free_port()
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=self.url, timeout=10.0)

    def start(
        self, env: dict[str, str] | None = None, resync: float = 30.0, args: list[str] | None = None
    ) -> Daemon:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=10.0)
        self.grpc_port = free_port()
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"  # for tritonclient.grpc
        # A crash point is armed only when the test asks for it, never inherited.
        full_env = {k: v for k, v in os.environ.items() if k != "HOTSWAP_CRASHPOINT"}
        full_env.update({**self.path_env, **(env or {})})
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*self.hotswap, "run", "--desired", str(self.desired),
             "--state-dir", str(self.state), "--listen", f"127.0.0.1:{self.port}", "--resync", str(resync),
             "--grpc-listen", self.grpc_url,
             "--log-json", *(args or [])],
            stdout=log, stderr=log, env=full_env, cwd=self.desired.parent,
        )  # fmt: skip
        return self

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.hotswap, *args, "--desired", str(self.desired), "--state-dir", str(self.state)],
            capture_output=True, text=True, env={**os.environ, **self.path_env}, cwd=self.desired.parent,
            check=check, timeout=60,
        )  # fmt: skip

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def served_version(self, model: str = "classifier") -> str | None:
        """The version that answers an inference now, or None if none does."""
        try:
            r = self.client.post(f"/v2/models/{model}/infer", json=infer_body())
        except httpx.HTTPError:
            return None
        return r.json().get("model_version") if r.status_code == 200 else None

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition"
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"daemon exited with {self.proc.returncode} while waiting for {what}\n{self.log_tail()}"
                )
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self.log_tail()}")

    def wait_version(self, version: str, model: str = "classifier", timeout: float = 30.0) -> None:
        self.wait_for(
            lambda: self.served_version(model) == version, timeout, f"{model} v{version} serving"
        )

    def wait_exit(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def status(self) -> dict[str, Any]:
        out = self.cli("status", "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def journal_records(self, model: str | None = None) -> list[dict[str, Any]]:
        args = ["journal", "--json"] + (["--model", model] if model else [])
        out = self.cli(*args)
        if out.returncode == 2 and "no journal here" in out.stderr:
            return []  # the daemon has not written its first record yet
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    def kill9(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        terminate(self.proc, grace_s=20)
        self.client.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def trust(state: Path, kit: Kit, policy: str | None = None) -> None:
    """Provision a device as its owner would: the publisher's key (and a policy) in state/trust."""
    trust_dir = state / "trust"
    trust_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kit.public_key, trust_dir / "publisher.pub")
    if policy is not None:
        write_text(trust_dir / "policy.yaml", policy)
