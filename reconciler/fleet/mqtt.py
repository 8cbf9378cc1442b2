"""The daemon's MQTT client: wake on a sync message, report state after every transition.

paho-mqtt rather than aiomqtt: the daemon is threaded (a reconcile loop thread, model workers,
uvicorn's own loop) and has no asyncio loop of its own to host an async client; paho's network
loop thread (`loop_start`) fits beside the others and owns the socket, so nothing else ever waits
on the broker. The callbacks use CallbackAPIVersion.VERSION2.

What the broker may do is bounded on purpose: a sync message only makes the device look at its
desired state now (`topics.wake_commit`); desired state itself comes only from git. The broker
being down never blocks or slows reconciling or serving: the connection is made asynchronously
(`connect_async`) and retried by paho with backoff; the controller's only call here,
`changed()`, sets an event. A reporter thread builds the report from the status snapshot and
keeps only the latest (coalesced): nothing is queued while disconnected, and `on_connect` sends
the latest once the broker is back. The last will (retained `offline`) makes a dead device show
as such; a clean stop publishes it too.

Built and started by `reconciler.cli.daemon` when the config names a broker.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as paho
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from reconciler.fleet import report, topics

log = structlog.get_logger("hotswap.fleet")

Wake = Callable[[str | None], None]  # a commit id, or None: look at desired state now
QOS = 1  # at least once: a retained state must not silently miss the broker
_T = TypeVar("_T")


class MqttConfigError(ValueError):
    pass


@dataclass(frozen=True)
class MqttSettings:
    broker: str  # mqtt://host[:1883] or mqtts://host[:8883]
    topic_prefix: str = topics.DEFAULT_PREFIX
    ca_file: Path | None = None  # mqtts: the CA that signed the broker's certificate
    username: str | None = None
    password_file: Path | None = None  # the password, from a file (never on the command line)
    cert_file: Path | None = None  # mqtts: a client certificate instead of a password
    key_file: Path | None = None
    keepalive_s: int = 30
    reconnect_max_s: int = 10

    def address(self) -> tuple[str, int, bool]:
        """(host, port, tls) from the broker URL."""
        url = urllib.parse.urlsplit(self.broker)
        if url.scheme not in ("mqtt", "mqtts") or not url.hostname:
            raise MqttConfigError(
                f"mqtt.broker wants mqtt://HOST[:PORT] or mqtts://…, not {self.broker!r}"
            )
        tls = url.scheme == "mqtts"
        try:
            port = url.port or (8883 if tls else 1883)
        except ValueError:
            raise MqttConfigError(f"mqtt.broker has a bad port: {self.broker!r}") from None
        return url.hostname, port, tls


class Client(paho.Client):
    """paho's client, telling `on_connect_error` why an attempt failed: paho's own loop retries
    quietly and keeps the exception, so an untrusted broker certificate would reach no log."""

    on_connect_error: Callable[[OSError], None] | None = None

    def reconnect(self) -> MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as e:
            if self.on_connect_error is not None:
                self.on_connect_error(e)
            raise


def make_client(settings: MqttSettings, client_id: str) -> Client:
    """A paho client with credentials and TLS as configured (not connected). MqttConfigError
    names the setting (and file) that is wrong, never a secret."""
    tls = settings.address()[2]
    client = Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    if settings.username is not None:
        password = None
        if settings.password_file is not None:
            try:
                password = settings.password_file.read_text().rstrip("\r\n")
            except OSError as e:  # the path is named, never the content
                raise MqttConfigError(
                    f"mqtt.password_file {settings.password_file}: {e.strerror}"
                ) from e
        client.username_pw_set(settings.username, password)
    if tls:
        client.tls_set_context(tls_context(settings))
    else:
        _no_tls_files(settings)
    client.reconnect_delay_set(1, settings.reconnect_max_s)
    return client


def _no_tls_files(settings: MqttSettings) -> None:
    # certificates named for a plain-text broker mean the operator expects TLS: connecting
    # without it would send the password (and every report) in the clear
    for key in ("ca_file", "cert_file", "key_file"):
        if getattr(settings, key) is not None:
            raise MqttConfigError(
                f"mqtt.{key} is set but mqtt.broker {settings.broker} is not mqtts://"
            )


def tls_context(settings: MqttSettings) -> ssl.SSLContext:
    """The client's TLS context: the broker's certificate must chain to `ca_file` (the system's
    CAs without one) and name the broker's host; the client certificate is sent if set."""
    ca, cert, key = settings.ca_file, settings.cert_file, settings.key_file
    if key is not None and cert is None:
        raise MqttConfigError("mqtt.key_file is set without mqtt.cert_file")
    if ca is None:
        context = ssl.create_default_context()
    else:
        context = _loaded(f"mqtt.ca_file {ca}", lambda: ssl.create_default_context(cafile=str(ca)))
    if cert is not None:
        named = f"mqtt.cert_file {cert}" + ("" if key is None else f" / mqtt.key_file {key}")
        _loaded(
            named, lambda: context.load_cert_chain(str(cert), None if key is None else str(key))
        )
    return context


def _loaded(named: str, load: Callable[[], _T]) -> _T:
    try:
        return load()
    except OSError as e:  # ssl's own text says what is wrong (and never a key's bytes)
        raise MqttConfigError(f"{named}: {e.strerror or e}") from e


def connect_error(settings: MqttSettings, error: OSError) -> str:
    """Why a connection attempt to the broker failed, as one line that names the broker."""
    if isinstance(error, ssl.SSLCertVerificationError):
        trusted = f"mqtt.ca_file {settings.ca_file}" if settings.ca_file else "the system's CAs"
        why = (
            f"its TLS certificate was refused ({error.verify_message}); it must be signed by"
            f" {trusted} and name {settings.address()[0]}"
        )
    elif isinstance(error, ssl.SSLError):
        why = f"TLS handshake failed ({error.reason or error})"
    elif isinstance(error, TimeoutError):
        why = "timed out"
    else:
        why = error.strerror or str(error) or type(error).__name__
    return f"cannot reach the broker {settings.broker}: {why}"


class FleetReporter:
    """One device's MQTT session: `start()`, then `changed()` after every status write, `stop()`."""

    def __init__(
        self,
        settings: MqttSettings,
        device_id: str,
        labels: dict[str, str],
        version: str,
        snapshot: Callable[[], dict[str, Any] | None],
        wake: Wake,
        journal_head: Callable[[], dict[str, Any] | None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.device_id = device_id
        self.labels = dict(labels)
        self.version = version
        self._snapshot = snapshot
        self._journal_head = journal_head  # read with each report: it moves with every record
        self._wake = wake
        prefix = settings.topic_prefix
        self.state_topic = topics.device_state(prefix, device_id)
        self.sync_topics = (topics.fleet_sync(prefix), topics.device_sync(prefix, device_id))
        self.client = make_client(settings, f"hotswap-{device_id}")
        offline = report.offline(device_id, self.labels, version).to_json()
        self.client.will_set(self.state_topic, json.dumps(offline), qos=QOS, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_connect_error = self._on_connect_error
        self._connect_error: str | None = None  # the last one logged (paho's thread only)
        self._lock = threading.Lock()
        self._latest: report.DeviceState | None = None  # coalesced: only the newest is kept
        self._sent: dict[str, Any] | None = None  # what the broker holds (comparable form)
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hotswap-fleet-report", daemon=True)
        self.published = 0  # reports sent (the bench reads these)

    def start(self) -> None:
        host, port, _ = self.settings.address()
        log.info("fleet.mqtt-connecting", broker=f"{host}:{port}", device=self.device_id,
                 state_topic=self.state_topic)  # fmt: skip
        self.client.connect_async(host, port, keepalive=self.settings.keepalive_s)
        self.client.loop_start()
        self._thread.start()
        self.changed()

    def changed(self) -> None:
        """The status snapshot was written (the controller calls this; it never blocks)."""
        self._changed.set()

    def stop(self) -> None:
        """A clean stop: say `offline` (the device no longer serves), then disconnect."""
        self._stop.set()
        self._changed.set()
        self._thread.join(timeout=5)
        if self.client.is_connected():
            offline = report.offline(self.device_id, self.labels, self.version).to_json()
            info = self.client.publish(self.state_topic, json.dumps(offline), qos=QOS, retain=True)
            # the connection may go meanwhile: the last will says the same
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2)
        self.client.disconnect()
        self.client.loop_stop()

    # -- the reporter thread -------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._changed.wait()
            self._changed.clear()
            if self._stop.is_set():
                return
            try:
                state = report.from_snapshot(
                    self._snapshot(), self.device_id, self.labels, self.version,
                    journal_head=self._journal_head(),
                )  # fmt: skip
            except Exception:
                log.exception("fleet.report-failed")
                continue
            with self._lock:
                self._latest = state
            self._send_latest()

    def _send_latest(self) -> None:
        """Publish the latest report if connected and it differs from what the broker holds."""
        with self._lock:
            state = self._latest
            if state is None or not self.client.is_connected():
                return  # kept; on_connect sends it
            if state.comparable() == self._sent:
                return
            self._sent = state.comparable()
        payload = json.dumps(state.to_json(), sort_keys=True)
        self.client.publish(self.state_topic, payload, qos=QOS, retain=True)
        self.published += 1
        log.debug("fleet.reported", topic=self.state_topic, bytes=len(payload))

    # -- paho's network thread -----------------------------------------------------------
    def _on_connect(
        self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            log.warning("fleet.mqtt-refused", broker=self.settings.broker, reason=str(reason))
            return
        self._connect_error = None
        log.info("fleet.mqtt-connected", broker=self.settings.broker, device=self.device_id)
        client.subscribe([(topic, QOS) for topic in self.sync_topics])
        with self._lock:
            self._sent = None  # the broker may have lost it (or holds the last will): send again
        if self._latest is None:
            self._changed.set()  # nothing built yet: the reporter thread builds and sends it
        else:
            self._send_latest()

    def _on_connect_error(self, error: OSError) -> None:
        # logged once per distinct cause: paho retries every few seconds for as long as it lasts
        message = connect_error(self.settings, error)
        if message != self._connect_error:
            log.error("fleet.mqtt-connect-failed", broker=self.settings.broker, error=message,
                      note="serving goes on; retrying with backoff")  # fmt: skip
        self._connect_error = message

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if not self._stop.is_set():
            log.warning(
                "fleet.mqtt-disconnected", reason=str(reason), note="reconnecting with backoff"
            )

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        if message.topic not in self.sync_topics:
            return
        try:
            commit = topics.wake_commit(bytes(message.payload))
        except topics.WakeRejected as e:
            log.warning("fleet.wake-ignored", topic=message.topic, reason=str(e))
            return
        log.info("fleet.wake", topic=message.topic, commit=commit)
        try:
            self._wake(commit)
        except Exception:
            log.exception("fleet.wake-failed", commit=commit)
