"""A real Mosquitto broker on 127.0.0.1 and a free port, started and stopped by its pid.

Anonymous, no persistence: each test gets a broker that holds only what the test made it hold.
`restart()` keeps the port, so clients configured with the URL reconnect to the new process.

With `pki` (`tests.support.tls.make_pki`) the listener is TLS only (`mqtts://`), its certificate
the PKI's server certificate for 127.0.0.1; `require_certificate` makes it refuse a client without
a certificate signed by the PKI's CA and take the certificate's CN as the user name; `passwords`
(user -> password, hashed by `mosquitto_passwd`) makes it refuse anonymous clients. `ClientAuth`
is what a test's own client (`Listener`, `publish`) presents.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.daemon import free_port
from tests.support.processes import terminate
from tests.support.tls import Pki

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")


@dataclass(frozen=True)
class ClientAuth:
    """How a test's client connects: TLS trusting `ca`, optionally a certificate, a password."""

    ca: Path | None = None  # None: plain MQTT
    cert: Path | None = None
    key: Path | None = None
    username: str | None = None
    password: str | None = None

    def apply(self, client: paho.Client) -> paho.Client:
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.ca is not None:
            client.tls_set(
                ca_certs=str(self.ca),
                certfile=None if self.cert is None else str(self.cert),
                keyfile=None if self.key is None else str(self.key),
            )
        return client


def _client(auth: ClientAuth | None) -> paho.Client:
    return (auth or ClientAuth()).apply(paho.Client(CallbackAPIVersion.VERSION2))


class Mosquitto:
    def __init__(
        self,
        workdir: Path,
        pki: Pki | None = None,
        require_certificate: bool = False,
        passwords: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.pki, self.require_certificate = pki, require_certificate
        self.port = free_port()
        self.url = f"{'mqtts' if pki else 'mqtt'}://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.config = workdir / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "log_dest stderr"]
        # as root, mosquitto would drop to its own user, who cannot read a test's 0700 tmp dirs
        lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        if pki is not None:
            lines += [
                f"cafile {pki.ca}",
                f"certfile {pki.server_cert}",
                f"keyfile {pki.server_key}",
            ]
        if require_certificate:
            assert pki is not None, "a client certificate needs a TLS listener"
            lines += ["require_certificate true", "use_identity_as_username true"]
        if passwords:
            lines += [f"password_file {self._password_file(passwords)}", "allow_anonymous false"]
        else:
            lines.append("allow_anonymous true")
        self.config.write_text("\n".join(lines) + "\n")

    def auth(self, username: str | None = None, password: str | None = None) -> ClientAuth:
        """What a client of this broker presents: its CA, the PKI's client certificate when one
        is required, and the user and password given."""
        certified = self.pki if self.require_certificate else None
        return ClientAuth(
            ca=self.pki.ca if self.pki else None,
            cert=certified.client_cert if certified else None,
            key=certified.client_key if certified else None,
            username=username,
            password=password,
        )

    def _password_file(self, passwords: dict[str, str]) -> Path:
        if MOSQUITTO_PASSWD is None:
            raise RuntimeError("mosquitto_passwd is not installed")
        path = self.workdir / "mosquitto.passwd"
        path.write_text("")
        for user, password in passwords.items():
            subprocess.run([MOSQUITTO_PASSWD, "-b", str(path), user, password],
                           check=True, capture_output=True, timeout=30)  # fmt: skip
        return path

    def start(self) -> Mosquitto:
        log = (self.workdir / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited: {(self.workdir / 'mosquitto.log').read_text()}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen within 10 s")

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class Listener:
    """A subscriber that keeps the last message per topic (retained ones included)."""

    def __init__(self, url_port: int, topic: str, auth: ClientAuth | None = None) -> None:
        self.messages: dict[str, bytes] = {}
        self.count = 0
        self._lock = threading.Lock()
        self.client = _client(auth)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, 1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", url_port)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages[message.topic] = bytes(message.payload)
            self.count += 1

    def json(self, topic: str) -> Any:
        with self._lock:
            raw = self.messages.get(topic)
        return None if raw is None else json.loads(raw)

    def wait_for(self, topic: str, predicate: Callable[[Any], bool], timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            doc = self.json(topic)
            if doc is not None and predicate(doc):
                return doc
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s on {topic}: last {self.json(topic)}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def publish(
    port: int,
    topic: str,
    payload: bytes | str,
    retain: bool = False,
    auth: ClientAuth | None = None,
) -> None:
    client = _client(auth)
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(timeout=5)
    client.loop_stop()
    client.disconnect()
