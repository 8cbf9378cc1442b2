"""`hotswap run`'s git source and device identity: flags, config file, environment, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli.config.layers import ConfigError
from reconciler.cli.identity import default_device_id
from reconciler.cli.main import parse_args
from reconciler.cli.run import daemon_options
from reconciler.core.device import DeviceIdentity


def test_git_and_device_flags_become_daemon_options(tmp_path: Path) -> None:
    args = parse_args(
        ["run", "--git", "https://git.example.com/fleet.git", "--git-path", "devices/line-3",
         "--device-id", "cam-07", "--label", "line=3", "--label", "ring=canary",
         "--label", "line=4", "--download-rate-limit", "2M"],
        {"HOTSWAP_CONFIG": ""},
    )  # fmt: skip
    options = daemon_options(args)
    assert options.git is not None and options.git.url == "https://git.example.com/fleet.git"
    assert (options.git.ref, options.git.path, options.git.depth) == ("main", "devices/line-3", 1)
    assert options.device == DeviceIdentity("cam-07", {"line": "4", "ring": "canary"})
    assert options.download_rate_limit == 2 << 20


def test_the_config_file_says_labels_as_a_mapping(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "git:\n  url: file:///srv/fleet\n  ref: production\n  path: rings/canary\n  depth: 0\n"
        "device:\n  id: cam-08\n  labels:\n    line: 3\n    ring: canary\n"
    )
    options = daemon_options(parse_args(["run", "--config", str(cfg)], {}))
    assert options.git is not None
    assert (options.git.ref, options.git.path, options.git.depth) == (
        "production",
        "rings/canary",
        0,
    )
    assert options.device == DeviceIdentity("cam-08", {"line": "3", "ring": "canary"})
    env = {"HOTSWAP_CONFIG": str(cfg), "HOTSWAP_DEVICE_LABELS": "ring=early,site=b"}
    assert daemon_options(parse_args(["run"], env)).device.labels == {"ring": "early", "site": "b"}  # type: ignore[union-attr]


def test_a_bad_label_or_id_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        parse_args(["run", "--label", "no-equals-sign"], {"HOTSWAP_CONFIG": ""})
    with pytest.raises(SystemExit):
        parse_args(["run", "--device-id", "has space"], {"HOTSWAP_CONFIG": ""})
    cfg = tmp_path / "config.yaml"
    cfg.write_text("device:\n  labels:\n    'bad key!': x\n")
    with pytest.raises(ConfigError):
        parse_args(["run", "--config", str(cfg)], {})


def test_the_default_id_is_the_machine_id_else_the_hostname(tmp_path: Path) -> None:
    machine_id = tmp_path / "machine-id"
    machine_id.write_text("0123456789abcdef0123456789abcdef\n")
    assert default_device_id((machine_id,)) == "0123456789abcdef0123456789abcdef"
    fallback = default_device_id((tmp_path / "missing",))
    assert fallback and DeviceIdentity(fallback).to_json()["id"] == fallback
    without = daemon_options(parse_args(["run"], {"HOTSWAP_CONFIG": ""}))
    assert without.git is None and without.device is not None and without.device.id
