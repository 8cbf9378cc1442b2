"""MQTT over TLS without a broker: which setting is wrong, said by name, and why a connection
attempt failed, said once per cause."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from reconciler.fleet.mqtt import (
    FleetReporter,
    MqttConfigError,
    MqttSettings,
    connect_error,
    make_client,
)
from tests.support.daemon import free_port
from tests.support.tls import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _tls(pki: Pki, **overrides: object) -> MqttSettings:
    fields: dict = {"broker": "mqtts://127.0.0.1:8883", "ca_file": pki.ca,
                    "cert_file": pki.client_cert, "key_file": pki.client_key}  # fmt: skip
    return MqttSettings(**{**fields, **overrides})


def _error(settings: MqttSettings) -> str:
    with pytest.raises(MqttConfigError) as e:
        make_client(settings, "c")
    return str(e.value)


def test_a_client_certificate_and_a_ca_make_a_verifying_context(pki: Pki) -> None:
    client = make_client(_tls(pki), "c")
    context = client._ssl_context
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname  # the broker's certificate must name the host it is reached by


def test_each_unusable_tls_file_is_named(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    assert _error(_tls(pki, ca_file=missing)).startswith(f"mqtt.ca_file {missing}: No such file")
    not_pem = tmp_path / "junk.pem"
    not_pem.write_text("not a certificate\n")
    assert f"mqtt.ca_file {not_pem}" in _error(_tls(pki, ca_file=not_pem))
    mismatched = _error(_tls(pki, key_file=pki.server_key))
    assert f"mqtt.key_file {pki.server_key}" in mismatched and "mismatch" in mismatched
    assert "BEGIN" not in mismatched  # never a key's content
    assert "without mqtt.cert_file" in _error(_tls(pki, cert_file=None))


def test_certificates_for_a_plain_broker_are_refused_not_ignored(pki: Pki) -> None:
    message = _error(MqttSettings("mqtt://127.0.0.1", ca_file=pki.ca))
    assert message == "mqtt.ca_file is set but mqtt.broker mqtt://127.0.0.1 is not mqtts://"


def test_a_connect_error_names_the_broker_and_the_ca(pki: Pki) -> None:
    settings = _tls(pki)
    untrusted = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] ...")
    untrusted.verify_message = "unable to get local issuer certificate"
    message = connect_error(settings, untrusted)
    assert message.startswith("cannot reach the broker mqtts://127.0.0.1:8883: ")
    assert "unable to get local issuer certificate" in message and str(pki.ca) in message
    refused = connect_error(settings, ConnectionRefusedError(111, "Connection refused"))
    assert refused.endswith(": Connection refused")


def test_a_failed_attempt_is_logged_once_per_cause(pki: Pki) -> None:
    broker = f"mqtts://127.0.0.1:{free_port()}"  # nothing listens there
    reporter = FleetReporter(_tls(pki, broker=broker), "dev", {}, "1", lambda: None, lambda _: None)
    with capture_logs() as logs:
        for _ in range(3):
            with pytest.raises(ConnectionRefusedError):
                reporter.client.connect("127.0.0.1", int(broker.rsplit(":", 1)[1]))
    failed = [e for e in logs if e["event"] == "fleet.mqtt-connect-failed"]
    assert len(failed) == 1 and failed[0]["log_level"] == "error"
    assert failed[0]["broker"] == broker and broker in failed[0]["error"]


def test_the_daemon_goes_on_without_mqtt_when_its_settings_cannot_be_used(tmp_path: Path) -> None:
    from reconciler.cli.daemon import DaemonOptions, _fleet_reporter

    settings = MqttSettings("mqtts://broker:8883", ca_file=tmp_path / "trust" / "mqtt-ca.pem")
    options = DaemonOptions(tmp_path / "desired", tmp_path / "state", mqtt=settings)
    with capture_logs() as logs:
        assert _fleet_reporter(options, controller=None, git=None) is None
    [invalid] = [e for e in logs if e["event"] == "fleet.mqtt-config-invalid"]
    assert invalid["log_level"] == "error" and invalid["broker"] == "mqtts://broker:8883"
    assert f"mqtt.ca_file {tmp_path / 'trust' / 'mqtt-ca.pem'}" in invalid["error"]
