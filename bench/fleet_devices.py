"""The simulated fleet of bench/fleet_sim.py: one Mosquitto, one git repository with a desired dir
per ring, N real `hotswap run` daemons (each its own state dir), a tap on every MQTT message and a
light load on every device.

Everything binds 127.0.0.1 on free ports and is stopped by the pid it started.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
from example_kit import MODEL, Kit, write_yaml_atomic
from paho.mqtt.enums import CallbackAPIVersion
from request_bodies import Payload
from servers import HOST, Server, child_env, free_port, hotswap_cli

GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}  # fmt: skip


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True, env={**os.environ, **GIT_ENV})  # fmt: skip
    return done.stdout.strip()


def ring_sizes(n: int, rings: list[str]) -> dict[str, int]:
    """About 10 % canary, 30 % early, the rest last (each ring at least one device)."""
    canary = max(1, n // 10)
    early = max(1, (n * 3) // 10)
    sizes = {rings[0]: canary, rings[1]: early}
    sizes[rings[2]] = max(1, n - canary - early)
    return sizes


def make_repo(root: Path, kit: Kit, rings: list[str]) -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    for ring in rings:
        write_yaml_atomic(_mkdir(root / "rings" / ring) / f"{MODEL}.yaml", kit.docs["1"])
    for version in ("2", "3"):
        write_yaml_atomic(_mkdir(root / "releases" / MODEL) / f"{version}.yaml", kit.docs[version])
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "fleet: classifier v1 everywhere")
    return root


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_broker(tmp: Path) -> Server:
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} {HOST}\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 10000\n")  # fmt: skip
    broker = Server([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
                    port, tmp / "mosquitto.log", tmp)  # fmt: skip
    broker.start()
    return broker


@dataclass
class Device:
    name: str
    ring: str
    server: Server
    state: Path

    def passes(self) -> int:
        try:
            return int(json.loads((self.state / "status.json").read_text()).get("passes", 0))
        except (OSError, ValueError):
            return -1

    def looked(self) -> int:
        """A counter that moves when the device looks at desired state: its git source's last
        sync (source.json is rewritten after every fetch), else its controller's passes."""
        try:
            return (self.state / "git" / "source.json").stat().st_mtime_ns
        except OSError:
            return self.passes()


def start_devices(kit: Kit, repo: Path, tmp: Path, sizes: dict[str, int], broker_url: str,
                  resync: float, source: str = "git") -> list[Device]:  # fmt: skip
    """`source`: "git", each device fetches the repository itself (`--git file://...
    --git-path rings/<ring>`, shallow, as on a real fleet); "worktree", each reads its ring's
    directory of the working tree (`--desired`, as beside a git-sync sidecar)."""
    devices: list[Device] = []
    for ring, count in sizes.items():
        for _ in range(count):
            name = f"dev-{len(devices):03d}"
            state = _mkdir(tmp / name / "trust").parent
            shutil.copyfile(kit.public_key, state / "trust" / "publisher.pub")
            port = free_port()
            desired = (["--git", repo.as_uri(), "--ref", "main", "--git-path", f"rings/{ring}"]
                       if source == "git" else ["--desired", str(repo / "rings" / ring)])  # fmt: skip
            argv = [*hotswap_cli(), "run", *desired,
                    "--state-dir", str(state), "--listen", f"{HOST}:{port}", "--resync", str(resync),
                    "--grpc-listen", "none", "--log-json", "--workers", "1", "--mqtt-broker", broker_url]  # fmt: skip
            server = Server(argv, port, tmp / name / "daemon.log", tmp / name)
            env = {**child_env(), "HOTSWAP_DEVICE_ID": name, "HOTSWAP_DEVICE_LABELS": f"ring={ring}",
                   "HOTSWAP_CONFIG": ""}  # fmt: skip
            with server.log_path.open("ab") as logf:
                server.proc = subprocess.Popen(
                    argv, stdout=logf, stderr=logf, env=env, cwd=server.cwd
                )
            devices.append(Device(name, ring, server, state))
    return devices


@dataclass
class Tap:
    """Every message on `<prefix>/#`: (receive time, topic, bytes, payload as JSON or None)."""

    port: int
    messages: list[tuple[float, str, int, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-tap")
        self.client.on_connect = lambda c, *_: c.subscribe("hotswap/#", 1)
        self.client.on_message = self._on_message
        self.client.connect(HOST, self.port)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, message: paho.MQTTMessage) -> None:
        now = time.monotonic()
        try:
            body = json.loads(message.payload) if message.topic.endswith("/state") else None
        except ValueError:
            body = None
        with self._lock:
            self.messages.append((now, message.topic, len(message.payload), body))

    def snapshot(self) -> list[tuple[float, str, int, Any]]:
        with self._lock:
            return list(self.messages)

    def publish(self, topic: str, payload: str) -> float:
        sent = time.monotonic()
        self.client.publish(topic, payload, qos=1).wait_for_publish(timeout=5)
        return sent

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class LightLoad:
    """One request every `period_s` to each device; counts what did not answer 200."""

    def __init__(self, devices: list[Device], payload: Payload, period_s: float) -> None:
        self.devices, self.payload, self.period_s = devices, payload, period_s
        self.sent = self.failed = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        clients = [
            httpx.Client(base_url=d.server.url, timeout=10, trust_env=False) for d in self.devices
        ]
        while not self._stop.is_set():
            for device, client in zip(self.devices, clients, strict=False):
                self.sent += 1
                try:
                    r = client.post(f"/v2/models/{MODEL}/infer", content=self.payload.body,
                                    headers=self.payload.headers)  # fmt: skip
                    ok = r.status_code == 200
                except httpx.HTTPError as e:
                    ok, r = False, e  # type: ignore[assignment]
                if not ok:
                    self.failed += 1
                    self.failures.append(f"{device.name}: {getattr(r, 'status_code', r)}")
            self._stop.wait(self.period_s)
        for client in clients:
            client.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
