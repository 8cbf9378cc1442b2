"""The processes under test: the hotswap daemon and the plain server, started and stopped.

Called by swap_under_load.run_hotswap and canary_under_load.run_canary (the daemon, through
daemon_on_v1), baselines.run_plain_restart (bench/plain_server.py) and rollback_to_standby (the
`hotswap` CLI, as a subprocess). Server is one class for both servers so that both are started,
waited for and stopped the same way: the comparison is fair and a failed run never leaves a
child process behind. Children get the repo on PYTHONPATH and no HOTSWAP_CRASHPOINT, whatever
the caller's environment says.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from example_kit import MODEL, REPO, Kit, write_yaml_atomic
from load_generator import REQUEST_TIMEOUT_S
from request_bodies import Payload, response_version

HOST = "127.0.0.1"
START_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def child_env() -> dict[str, str]:
    """The environment of every child process the bench starts."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("HOTSWAP_CRASHPOINT", None)
    return env


class Server:
    """A child process serving V2 on 127.0.0.1:port, always stopped by stop()."""

    def __init__(self, argv: list[str], port: int, log_path: Path, cwd: Path) -> None:
        self.argv = argv
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as logf:
            self.proc = subprocess.Popen(
                self.argv, stdout=logf, stderr=logf, env=child_env(), cwd=self.cwd
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_serving(
        self, payload: Payload, version: str, timeout: float = START_TIMEOUT_S
    ) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S, trust_env=False) as c:
            while time.monotonic() < deadline:
                if not self.alive():
                    raise RuntimeError(f"server exited while starting:\n{self.log_tail()}")
                try:
                    r = c.post(
                        f"/v2/models/{MODEL}/infer", content=payload.body, headers=payload.headers
                    )
                    if r.status_code == 200 and response_version(r) == version:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"v{version} not serving after {timeout:.0f}s:\n{self.log_tail()}")


def daemon_on_v1(
    kit: Kit, tmp: Path, grpc_port: int | None = None, doc: dict[str, Any] | None = None
) -> tuple[Server, Path, Path]:
    """The daemon (not started yet) with v1 desired (or `doc`) and the kit's publisher trusted;
    returns it, the desired YAML to replace and the state directory. gRPC is off unless
    `grpc_port` is given (protocols.py measures it; the swap scenarios speak HTTP only)."""
    desired, state = tmp / "desired", tmp / "state"
    desired.mkdir()
    (state / "trust").mkdir(parents=True)
    shutil.copyfile(kit.public_key, state / "trust" / "publisher.pub")
    yaml_path = desired / f"{MODEL}.yaml"
    write_yaml_atomic(yaml_path, doc or kit.docs["1"])
    port = free_port()
    daemon = Server(
        [sys.executable, "-m", "reconciler", "run", "--desired", str(desired),
         "--state-dir", str(state), "--listen", f"{HOST}:{port}", "--resync", "30", "--log-json",
         "--grpc-listen", f"{HOST}:{grpc_port}" if grpc_port else "none"],
        port, tmp / "daemon.log", tmp,
    )  # fmt: skip
    return daemon, yaml_path, state


def daemon_defaults() -> dict[str, int]:
    """The daemon's default ORT intra-op threads per instance and inference worker count, so
    the baselines run the model exactly as `hotswap run` does without flags."""
    threads, workers = 1, max(1, os.cpu_count() or 1)
    with contextlib.suppress(Exception):
        from reconciler.cli.main import build_parser

        ns = build_parser().parse_args(["run"])
        threads = int(getattr(ns, "threads", None) or max(1, os.cpu_count() or 1))
    with contextlib.suppress(Exception):
        from runtime.serving.server import default_workers

        workers = int(default_workers())
    return {"intra_op_threads": threads, "workers": workers}


def hotswap_cli() -> list[str]:
    """The `hotswap` console script beside this interpreter (the venv's), else the module."""
    script = Path(sys.executable).parent / "hotswap"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "reconciler"]
