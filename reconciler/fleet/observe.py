"""The fleet as its retained reports show it: a live subscription to every device's state.

Used by `hotswap fleet status` (one look, a bounded wait) and `hotswap fleet rollout` (watched
for minutes while a ring takes a version). Each device's latest report is kept by id; a message
that is not a report this release reads is logged once per device and left out.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import paho.mqtt.client as paho
import structlog

from reconciler.fleet import topics
from reconciler.fleet.mqtt import MqttSettings, connect_error, make_client
from reconciler.fleet.report import DeviceState, NotAReport

log = structlog.get_logger("hotswap.fleet")


class BrokerUnreachable(RuntimeError):
    pass


class FleetObserver:
    def __init__(self, settings: MqttSettings, client_id: str = "") -> None:
        self.settings = settings
        self.client = make_client(settings, client_id)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self._lock = threading.Lock()
        self._states: dict[str, DeviceState] = {}
        self._subscribed = threading.Event()
        self._refused: str | None = None  # the broker's CONNACK reason, when it said no
        self._last_message = time.monotonic()
        self.messages = 0

    def __enter__(self) -> FleetObserver:
        host, port, _ = self.settings.address()
        try:
            self.client.connect(host, port, keepalive=self.settings.keepalive_s)
        except OSError as e:
            raise BrokerUnreachable(connect_error(self.settings, e)) from e
        self.client.loop_start()
        return self

    def __exit__(self, *_: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._refused = str(reason)
            self._subscribed.set()  # no subscription will come: settle says why now
            return
        client.subscribe(topics.all_states(self.settings.topic_prefix), 1)

    def _on_subscribe(self, _c: paho.Client, _u: Any, _mid: Any, _codes: Any, _p: Any) -> None:
        with self._lock:
            self._last_message = time.monotonic()  # the retained states follow the ack
        self._subscribed.set()

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        device = topics.device_of_state_topic(self.settings.topic_prefix, message.topic)
        if device is None or not message.payload:
            return
        try:
            state = DeviceState.from_json(json.loads(message.payload))
        except (ValueError, NotAReport) as e:
            log.warning("fleet.report-unreadable", device=device, error=str(e))
            return
        with self._lock:
            self._states[device] = state
            self._last_message = time.monotonic()
            self.messages += 1

    def settle(self, wait_s: float, quiet_s: float = 0.5) -> dict[str, DeviceState]:
        """Wait for the retained states: until `quiet_s` passes with no new one, at most `wait_s`."""
        deadline = time.monotonic() + wait_s
        if not self._subscribed.wait(timeout=wait_s):
            raise BrokerUnreachable(f"no subscription on {self.settings.broker} within {wait_s}s")
        if self._refused is not None:
            raise BrokerUnreachable(
                f"the broker {self.settings.broker} refused the connection: {self._refused}"
            )
        while time.monotonic() < deadline:
            with self._lock:
                quiet_for = time.monotonic() - self._last_message
            if quiet_for >= quiet_s:
                break
            time.sleep(0.05)
        return self.states()

    def states(self) -> dict[str, DeviceState]:
        with self._lock:
            return dict(self._states)
