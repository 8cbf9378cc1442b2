"""The fleet options through the config file, and the rollout's edit of a ring file."""

from __future__ import annotations

from pathlib import Path

import yaml

from reconciler.cli.fleet_options import mqtt_settings
from reconciler.cli.fleet_rollout import edited
from reconciler.cli.gitopts import device_identity
from reconciler.cli.main import parse_args
from reconciler.cli.run import daemon_options
from reconciler.core.device import DeviceIdentity


def test_mqtt_and_device_from_the_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "mqtt:\n  broker: mqtts://broker.example:8883\n  username: dev\n"
        "  password_file: mqtt.password\n  topic_prefix: plant-7\n"
        "device:\n  id: line-3-a\n  labels: {ring: canary, line: '3'}\n"
    )
    args = parse_args(["--config", str(cfg), "run", "--trust-dir", str(tmp_path / "trust")], {})
    settings = mqtt_settings(args)
    assert settings is not None and settings.topic_prefix == "plant-7"
    assert settings.password_file == tmp_path / "trust" / "mqtt.password"  # in the trust dir
    assert device_identity(args) == DeviceIdentity("line-3-a", {"ring": "canary", "line": "3"})
    options = daemon_options(args)
    assert options.mqtt == settings
    assert options.device is not None and options.device.labels["ring"] == "canary"


def test_no_broker_no_mqtt() -> None:
    args = parse_args(["run"], {})
    assert mqtt_settings(args) is None and daemon_options(args).mqtt is None


def test_a_ring_file_takes_the_releases_version_bound_fields_only() -> None:
    ring = {"spec": {"model": {"version": "1", "sha256": "a"}, "health": {"golden": "g1", "atol": 1},
                     "rollout": {"strategy": "canary"}}}  # fmt: skip
    release = {"spec": {"model": {"version": "2", "sha256": "b"}, "health": {"golden": "g2"},
                        "rollout": {"strategy": "immediate"}}}  # fmt: skip
    out = yaml.safe_load(edited(yaml.safe_dump(ring).encode(), release))
    assert out["spec"]["model"] == {"version": "2", "sha256": "b"}
    assert out["spec"]["health"] == {"golden": "g2", "atol": 1}
    assert out["spec"]["rollout"] == {"strategy": "canary"}  # the ring's own
    assert yaml.safe_load(edited(None, release)) == release


def test_rollout_without_a_reachable_broker_changes_nothing(tmp_path: Path, capsys) -> None:
    from reconciler.cli.main import main
    from tests.support.daemon import free_port
    from tests.support.fleet import git

    repo = tmp_path / "fleet"
    (repo / "rings" / "canary").mkdir(parents=True)
    (repo / "releases" / "m").mkdir(parents=True)
    (repo / "releases" / "m" / "2.yaml").write_text("spec: {model: {version: '2'}}\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "commit", "-q", "--allow-empty", "-m", "start")
    rc = main(["fleet", "rollout", "--repo", str(repo), "--model", "m", "--version", "2",
               "--rings", "canary", "--broker", f"mqtt://127.0.0.1:{free_port()}"])  # fmt: skip
    assert rc == 1 and "cannot reach the broker" in capsys.readouterr().err
    assert git(repo, "rev-list", "--count", "HEAD") == "1"
