"""The MQTT options (`--mqtt-broker` …, the config file's `mqtt` section) and labels given as a
selector (`hotswap fleet status --label`).

`hotswap run` and `hotswap fleet` both register the MQTT options here (one dest per config key,
so `mqtt.broker` in the config file sets either). The device's own id and labels are `hotswap run`'s
(`reconciler.cli.gitopts`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from reconciler.core.device import labels_of, parse_label
from reconciler.fleet.mqtt import MqttSettings
from reconciler.fleet.topics import DEFAULT_PREFIX

MACHINE_ID = Path("/etc/machine-id")


def add_mqtt_options(
    parser: argparse.ArgumentParser, broker_flag: str = "--mqtt-broker", in_trust_dir: bool = True
) -> None:
    """`in_trust_dir`: a relative file resolves against the trust dir (`hotswap run`); else
    against the working directory (`fleet status | rollout`, run from a laptop or CI)."""
    relative = " (a relative path is in the trust dir)" if in_trust_dir else ""
    group = parser.add_argument_group("MQTT (docs/fleet.md)")
    group.add_argument(
        broker_flag, dest="mqtt_broker", default=None, metavar="URL",
        help="broker: mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (default: none, no MQTT)",
    )  # fmt: skip
    group.add_argument(
        "--mqtt-topic-prefix", dest="mqtt_topic_prefix", default=DEFAULT_PREFIX, metavar="PREFIX",
        help="topic prefix (default: %(default)s)",
    )  # fmt: skip
    for name, what in (
        ("ca-file", "mqtts: CA certificate of the broker"),
        ("username", "user name"),
        ("password-file", "file holding the password"),
        ("cert-file", "mqtts: client certificate"),
        ("key-file", "mqtts: client certificate's key"),
    ):
        dest = "mqtt_" + name.replace("-", "_")
        suffix = "" if name == "username" else relative
        group.add_argument(f"--mqtt-{name}", dest=dest, default=None, help=what + suffix)


def _in_trust_dir(value: str | None, trust_dir: Path | None) -> Path | None:
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() or trust_dir is None else trust_dir / path


def mqtt_settings(args: argparse.Namespace) -> MqttSettings | None:
    """The broker settings, or None when no broker is configured."""
    broker = getattr(args, "mqtt_broker", None)
    if not broker:
        return None
    trust_dir = getattr(args, "trust_dir", None)
    return MqttSettings(
        broker=broker,
        topic_prefix=args.mqtt_topic_prefix or DEFAULT_PREFIX,
        ca_file=_in_trust_dir(args.mqtt_ca_file, trust_dir),
        username=args.mqtt_username,
        password_file=_in_trust_dir(args.mqtt_password_file, trust_dir),
        cert_file=_in_trust_dir(args.mqtt_cert_file, trust_dir),
        key_file=_in_trust_dir(args.mqtt_key_file, trust_dir),
    )


def parse_labels(value: Any) -> dict[str, str]:
    """Labels as a mapping, from the config file's mapping or a list of `k=v` flags."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    try:
        return labels_of(parse_label(str(item)) for item in value or ())
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e
