"""Shared fixtures: the example models built once per session, and a real daemon process.

Tests drive the daemon exactly as an operator would: desired-state files written atomically
(as git and editors do), the V2 HTTP API, the CLI, and signals — SIGKILL included.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from reconciler.signing import publish

REPO = Path(__file__).resolve().parent.parent
INPUT_SHAPE = (1, 3, 224, 224)


def _load_make_models() -> Any:
    spec = importlib.util.spec_from_file_location(
        "make_models", REPO / "examples" / "make_models.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Kit:
    """The example models (versions 1-6) and their deployment documents, with absolute paths.

    `docs` is keyed by model version ("1" ... "6"; 5 and 6 roll out as canaries), plus
    "2-canary": v2 with the canary rollout of classifier.v2-canary.yaml (docs["2"] is the
    immediate one)."""

    registry: Path
    public_key: Path  # the publisher's key: a device trusts the kit once this is in its trust dir
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def doc(self, version: str, name: str = "classifier") -> dict[str, Any]:
        d = copy.deepcopy(self.docs[version])
        d["metadata"]["name"] = name
        if name != "classifier":
            # A signed manifest binds the name: another model name needs its own package.
            package = publish(
                Path(d["spec"]["model"]["source"]),
                name,
                d["spec"]["model"]["version"],  # "2" for the key "2-canary"
                self.public_key.with_suffix(".key"),
                self.registry,
            )
            d["spec"]["model"]["source"] = str(package / "model.onnx")
            d["spec"]["model"]["manifest"] = str(package / "manifest.json")
        return d

    def write(
        self,
        desired: Path,
        version: str,
        name: str = "classifier",
        filename: str | None = None,
        mutate: Callable[[dict[str, Any]], None] | None = None,
    ) -> Path:
        d = self.doc(version, name)
        if mutate:
            mutate(d)
        return write_text(
            desired / (filename or f"{name}.yaml"), yaml.safe_dump(d, sort_keys=False)
        )


def write_text(path: Path, text: str) -> Path:
    """Write like git and careful editors do: a complete file appears at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


@pytest.fixture(scope="session")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    root = tmp_path_factory.mktemp("kit")
    make_models = _load_make_models()
    make_models.build(
        root / "registry", None, examples=root / "examples", key=root / "keys" / "hotswap.key"
    )
    result = Kit(root / "registry", root / "keys" / "hotswap.pub")
    for yaml_path in sorted((root / "examples").glob("classifier.v*.yaml")):
        doc = yaml.safe_load(yaml_path.read_text())
        version = doc["spec"]["model"]["version"]
        base = yaml_path.parent
        doc["spec"]["model"]["source"] = str((base / doc["spec"]["model"]["source"]).resolve())
        doc["spec"]["health"]["golden"] = str((base / doc["spec"]["health"]["golden"]).resolve())
        doc["spec"]["model"]["manifest"] = str((base / doc["spec"]["model"]["manifest"]).resolve())
        key = f"{version}-canary" if yaml_path.name.endswith("-canary.yaml") else version
        result.docs[key] = doc
    assert set(result.docs) >= {"1", "2", "3", "4", "5", "6", "2-canary"}
    assert result.docs["2"]["spec"]["rollout"]["strategy"] == "immediate"
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def infer_body(value: float = 0.1, batch: int = 1) -> dict[str, Any]:
    data = np.full((batch, *INPUT_SHAPE[1:]), value, np.float32)
    return {
        "inputs": [
            {
                "name": "input",
                "shape": list(data.shape),
                "datatype": "FP32",
                "data": data.ravel().tolist(),
            }
        ]
    }


class Daemon:
    """One `hotswap run` process on a free loopback port."""

    def __init__(self, desired: Path, state: Path, log_path: Path) -> None:
        self.desired = desired
        self.state = state
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=self.url, timeout=10.0)

    def start(
        self, env: dict[str, str] | None = None, resync: float = 30.0, args: list[str] | None = None
    ) -> Daemon:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=10.0)
        # A crash point is armed only when the test asks for it, never inherited.
        full_env = {k: v for k, v in os.environ.items() if k != "HOTSWAP_CRASHPOINT"}
        full_env.update({"PYTHONPATH": str(REPO), **(env or {})})
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli", "run", "--desired", str(self.desired),
             "--state-dir", str(self.state), "--listen", f"127.0.0.1:{self.port}", "--resync", str(resync),
             "--log-json", *(args or [])],
            stdout=log, stderr=log, env=full_env, cwd=self.desired.parent,
        )  # fmt: skip
        return self

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "reconciler.cli", *args, "--desired", str(self.desired), "--state-dir", str(self.state)],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=self.desired.parent,
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
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
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


@pytest.fixture
def daemon(tmp_path: Path, kit: Kit) -> Iterator[Callable[..., Daemon]]:
    """Factory: `daemon()` gives a Daemon on tmp desired/ and state/ dirs (not yet started),
    on a device that trusts the kit's publisher key."""
    made: list[Daemon] = []

    def make(desired: Path | None = None, state: Path | None = None) -> Daemon:
        d = Daemon(
            desired or tmp_path / "desired",
            state or tmp_path / "state",
            tmp_path / f"daemon-{len(made)}.log",
        )
        d.desired.mkdir(parents=True, exist_ok=True)
        trust(d.state, kit)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()
