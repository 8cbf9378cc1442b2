"""MQTT over TLS against a real Mosquitto and a real daemon: a client certificate and the CA from
the trust dir, named in the config file; a broker whose certificate the device does not trust
(it serves on, and says why); `hotswap fleet status` with the same settings, and with a user
name and password over TLS."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.support.daemon import Daemon
from tests.support.fleet import hotswap
from tests.support.kit import Kit
from tests.support.mosquitto import MOSQUITTO_PASSWD, Listener, Mosquitto, publish
from tests.support.tls import Pki, make_pki

STATE = "hotswap/devices/dev-1/state"
FILES = {"mqtt-ca.pem": "ca", "mqtt-client.pem": "client_cert", "mqtt-client.key": "client_key"}


def _provision(d: Daemon, pki: Pki, config: Path, broker: str, extra: str = "") -> None:
    """The broker's CA and the device's certificate in its trust dir; the config names them."""
    for name, field in FILES.items():
        shutil.copyfile(getattr(pki, field), d.state / "trust" / name)
    config.write_text(
        f"mqtt:\n  broker: {broker}\n  ca_file: mqtt-ca.pem\n  cert_file: mqtt-client.pem\n"
        f"  key_file: mqtt-client.key\n{extra}device:\n  id: dev-1\n  labels: {{ring: canary}}\n"
    )


def _fleet_status(broker: Mosquitto, ca: Path, *auth: str) -> tuple[int, dict | None, str]:
    done = hotswap("fleet", "status", "--broker", broker.url, "--mqtt-ca-file", str(ca),
                   *auth, "--wait", "1s", "--json", timeout=60)  # fmt: skip
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None, done.stderr


def _passes(d: Daemon) -> int:
    return int(json.loads((d.state / "status.json").read_text()).get("passes", 0))


def test_a_device_with_a_client_certificate_reports_its_state_and_journal_head_over_mqtts(
    kit: Kit, daemon, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path / "pki")
    broker = Mosquitto(tmp_path, pki, require_certificate=True).start()
    listener = None
    try:
        d: Daemon = daemon()
        config = tmp_path / "config.yaml"
        _provision(d, pki, config, broker.url)
        kit.write(d.desired, "1")
        d.start(env={"HOTSWAP_CONFIG": str(config)}, resync=600)
        d.wait_version("1")
        listener = Listener(broker.port, "hotswap/devices/+/state", broker.auth())

        def reported_with_head(doc: dict) -> bool:
            head = json.loads((d.state / "journal.head").read_text())
            model = doc.get("models", {}).get("classifier", {})
            return model.get("active") == "1" and doc.get("journal_head") == {
                k: head[k] for k in ("seq", "hash", "time")
            }

        doc = listener.wait_for(STATE, reported_with_head)
        assert doc["status"] == "online" and doc["labels"] == {"ring": "canary"}
        # the broker took the device's certificate as its identity
        assert "u'device-7'" in (tmp_path / "mosquitto.log").read_text()
        passes = _passes(d)
        publish(broker.port, "hotswap/devices/dev-1/sync", b"0123abcd", auth=broker.auth())
        d.wait_for(lambda: _passes(d) > passes, 20, "a pass after the wake (resync is 600 s)")
        trust = d.state / "trust"
        rc, summary, err = _fleet_status(broker, trust / "mqtt-ca.pem",
                                         "--mqtt-cert-file", str(trust / "mqtt-client.pem"),
                                         "--mqtt-key-file", str(trust / "mqtt-client.key"))  # fmt: skip
        assert rc == 0, err
        assert summary is not None and [x["device"] for x in summary["devices"]] == ["dev-1"]
        assert summary["devices"][0]["journal_head"]["seq"] >= doc["journal_head"]["seq"]
    finally:
        if listener is not None:
            listener.close()
        broker.stop()


@pytest.mark.skipif(MOSQUITTO_PASSWD is None, reason="mosquitto_passwd is not installed")
def test_an_untrusted_broker_is_named_in_the_log_and_the_device_serves_on(
    kit: Kit, daemon, tmp_path: Path
) -> None:
    pki, other = make_pki(tmp_path / "pki"), make_pki(tmp_path / "other")
    broker = Mosquitto(tmp_path, pki, passwords={"dev-1": "s3cret"}).start()
    try:
        d: Daemon = daemon()
        config = tmp_path / "config.yaml"
        (d.state / "trust" / "mqtt.password").write_text("s3cret\n")
        (tmp_path / "wrong.password").write_text("guess\n")
        extra = "  username: dev-1\n  password_file: mqtt.password\n"
        _provision(d, other, config, broker.url, extra)  # a CA that did not sign the broker's
        kit.write(d.desired, "1")
        d.start(env={"HOTSWAP_CONFIG": str(config)}, resync=600)
        d.wait_version("1")
        assert d.client.get("/v2/health/ready").status_code == 200

        def failures() -> list[dict]:
            lines = d.log_path.read_text().splitlines()
            return [json.loads(x) for x in lines if '"fleet.mqtt-connect-failed"' in x]

        d.wait_for(lambda: bool(failures()), 20, "the connection failure logged")
        started = time.monotonic()
        d.wait_for(lambda: _tls_refusals(tmp_path) >= 2, 20, "paho to try again")
        failed = failures()
        assert len(failed) == 1, failed  # once per cause, not once per retry
        assert failed[0]["level"] == "error" and failed[0]["broker"] == broker.url
        assert broker.url in failed[0]["error"] and "certificate" in failed[0]["error"]
        assert "Traceback" not in d.log_path.read_text()
        assert d.served_version() == "1" and time.monotonic() - started < 20
        # an operator's client with the right CA and password: the device never got there
        password = ["--mqtt-username", "dev-1", "--mqtt-password-file"]
        trust = d.state / "trust"
        rc, summary, err = _fleet_status(broker, pki.ca, *password, str(trust / "mqtt.password"))
        assert rc == 0 and summary is not None and summary["devices"] == [], err
        rc, _, err = _fleet_status(broker, pki.ca, *password, str(tmp_path / "wrong.password"))
        assert rc == 1 and f"the broker {broker.url} refused the connection" in err
        rc, _, err = _fleet_status(broker, other.ca, *password, str(trust / "mqtt.password"))
        assert rc == 1 and "TLS certificate was refused" in err and "Traceback" not in err
    finally:
        broker.stop()


def _tls_refusals(workdir: Path) -> int:
    """Handshakes the broker saw the client abort (an alert): each is one attempt of the
    device's (the readiness probe's bare TCP connection sends none)."""
    log = (workdir / "mosquitto.log").read_text(errors="replace")
    return log.count("tlsv1 alert")
