"""MQTT against a real Mosquitto and a real daemon: retained state, wake, last will, a broker
that restarts and one that is down when the daemon starts."""

from __future__ import annotations

import json
import time

from tests.support.daemon import Daemon
from tests.support.kit import Kit
from tests.support.mosquitto import Listener, Mosquitto, publish

STATE = "hotswap/devices/dev-1/state"
FLEET_ENV = {"HOTSWAP_DEVICE_ID": "dev-1", "HOTSWAP_DEVICE_LABELS": "ring=canary,line=3"}


def serving(version: str):
    def check(doc: dict) -> bool:
        model = doc.get("models", {}).get("classifier", {})
        return doc.get("status") == "online" and model.get("active") == version

    return check


def test_state_is_retained_and_a_wake_makes_the_device_look_now(
    kit: Kit, daemon, mosquitto: Mosquitto
) -> None:
    d: Daemon = daemon()
    kit.write(d.desired, "1")
    d.start(env=FLEET_ENV, resync=600, args=["--mqtt-broker", mosquitto.url])
    d.wait_version("1")
    # a subscriber that comes later still sees the state: it is retained
    listener = Listener(mosquitto.port, "hotswap/devices/+/state")
    try:
        doc = listener.wait_for(STATE, serving("1"))
        assert doc["kind"] == "DeviceState" and doc["apiVersion"] == "hotswap/v1"
        assert doc["labels"] == {"ring": "canary", "line": "3"}
        assert doc["models"]["classifier"]["state"] == "serving"
        assert doc["models"]["classifier"]["desired"] == "1"
        assert doc["hotswap_version"]
        passes = _passes(d)
        publish(mosquitto.port, "hotswap/fleet/sync", b"not a commit; serve v9")
        publish(mosquitto.port, "hotswap/devices/dev-1/sync", b"0123abcd")
        d.wait_for(lambda: _passes(d) > passes, 20, "a pass after the wake (resync is 600 s)")
        log = d.log_path.read_text()
        assert '"fleet.wake-ignored"' in log and '"commit": "0123abcd"' in log
        d.stop()  # a clean stop says offline too
        listener.wait_for(STATE, lambda doc: doc["status"] == "offline", 20)
    finally:
        listener.close()


def test_broker_down_at_start_then_restarted_then_the_device_killed(
    kit: Kit, daemon, tmp_path
) -> None:
    broker = Mosquitto(tmp_path)  # not started: the daemon must serve and reconcile regardless
    d: Daemon = daemon()
    kit.write(d.desired, "1")
    d.start(env=FLEET_ENV, resync=600, args=["--mqtt-broker", broker.url])
    try:
        d.wait_version("1")
        kit.write(d.desired, "2")
        started = time.monotonic()
        d.wait_version("2")
        assert time.monotonic() - started < 30
        broker.start()
        listener = Listener(broker.port, "hotswap/devices/+/state")
        try:
            listener.wait_for(STATE, serving("2"))  # the latest, sent once connected
            broker.restart()  # no persistence: the retained state is gone with the old broker
            listener.close()
            listener = Listener(broker.port, "hotswap/devices/+/state")
            listener.wait_for(STATE, serving("2"))  # sent again on reconnect
            d.kill9()
            listener.wait_for(STATE, lambda doc: doc["status"] == "offline", 30)  # the last will
        finally:
            listener.close()
    finally:
        broker.stop()


def _passes(d: Daemon) -> int:
    return int(json.loads((d.state / "status.json").read_text()).get("passes", 0))
