"""The config file, the environment and flags: one precedence for the daemon and every command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from reconciler.cli.config import layers
from reconciler.cli.config.keys import config_keys, options_by_dest
from reconciler.cli.config.layers import ConfigError
from reconciler.cli.main import build_parser, main, parse_args

MODELINE = "# yaml-language-server: $schema=https://hotswap.dev/schemas/config.v1.json\n"


def _write(path: Path, text: str) -> Path:
    path.write_text(MODELINE + text)
    return path


def test_flag_beats_environment_beats_file_beats_default(tmp_path: Path) -> None:
    cfg = _write(tmp_path / "config.yaml", "state_dir: /from/file\nworkers: 3\nthreads: 2\n")
    env = {"HOTSWAP_CONFIG": str(cfg), "HOTSWAP_WORKERS": "5", "HOTSWAP_THREADS": "4"}
    args = parse_args(["run", "--threads", "6"], env)
    assert args.state_dir == Path("/from/file")  # file over default
    assert args.workers == 5  # environment over file
    assert args.threads == 6  # flag over environment
    assert args.resync == 30.0  # default
    assert args.trust_dir == Path("/from/file/trust")  # follows the state dir it resolved to


def test_every_command_reads_the_state_dir_from_the_same_file(tmp_path: Path) -> None:
    cfg = _write(tmp_path / "config.yaml", "state_dir: /var/lib/hotswap\ndesired_dir: desired\n")
    for argv in (["status"], ["plan"], ["journal"], ["rollback", "m"], ["retry", "m"], ["run"]):
        args = parse_args(["--config", str(cfg), *argv], {})
        assert args.state_dir == Path("/var/lib/hotswap"), argv
        assert args.desired == tmp_path / "desired", argv  # relative to the file's directory


def test_values_mean_what_the_flag_would(tmp_path: Path) -> None:
    cfg = _write(
        tmp_path / "c.yaml",
        "memory_budget: 2G\ntrt_workspace: 1073741824\nlisten: 0.0.0.0:9001\naccess_log: true\n",
    )
    args = parse_args(["run", "--config", str(cfg)], {"HOTSWAP_LOG_JSON": "yes"})
    assert args.memory_budget == 2 << 30 and args.trt_workspace == 1 << 30
    assert args.listen == ("0.0.0.0", 9001)
    assert args.access_log is True and args.log_json is True


def test_errors_name_the_file_line_and_key(tmp_path: Path) -> None:
    cfg = _write(
        tmp_path / "c.yaml", "state_dir: s\nworkers: four\nmemory_budget: lots\nmqtt:\n  brokr: x\n"
    )
    with pytest.raises(ConfigError) as e:
        parse_args(["status", "--config", str(cfg)], {})
    text = "\n".join(e.value.problems)
    assert f"{cfg}:3 workers: 'four' is not of type 'integer'" in text
    assert f"{cfg}:6 mqtt.brokr: unknown field 'brokr'" in text
    _write(cfg, "memory_budget: lots\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:2 memory_budget: a size like 512M"):
        parse_args(["run", "--config", str(cfg)], {})
    with pytest.raises(ConfigError, match="HOTSWAP_LISTEN: --listen wants HOST:PORT"):
        parse_args(["run"], {"HOTSWAP_CONFIG": "", "HOTSWAP_LISTEN": "8000"})


def test_a_missing_default_file_is_no_config_a_missing_named_one_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(layers, "DEFAULT_PATH", tmp_path / "etc" / "hotswap" / "config.yaml")
    args = parse_args(["status"], {})
    assert args.state_dir == Path("state") and args.desired == Path("desired")
    assert main(["status", "--config", str(tmp_path / "nothere.yaml")]) == 2
    assert "nothere.yaml: cannot read the config file" in capsys.readouterr().err
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing set yet\n")
    assert parse_args(["run", "--config", str(empty)], {}).listen == ("127.0.0.1", 8000)


def test_help_works_with_a_broken_config(tmp_path: Path) -> None:
    cfg = _write(tmp_path / "c.yaml", "workers: many\n")
    with pytest.raises(SystemExit) as e:
        parse_args(["run", "--help", "--config", str(cfg)], {})
    assert e.value.code == 0


def test_config_show_says_where_each_value_came_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _write(tmp_path / "c.yaml", "state_dir: /s\nlisten: 0.0.0.0:9000\ndevice:\n  id: dev-7\n")
    monkeypatch.setenv("HOTSWAP_CONFIG", str(cfg))
    monkeypatch.setenv("HOTSWAP_WORKERS", "2")
    assert main(["config", "show", "--json", "--desired", "/d"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {s["key"]: s for s in report["settings"]}
    assert report["file"] == str(cfg)
    assert (rows["desired_dir"]["value"], rows["desired_dir"]["source"]) == ("/d", "flag")
    assert rows["workers"] == {
        "key": "workers",
        "value": 2,
        "source": "env",
        "where": "HOTSWAP_WORKERS",
    }
    assert rows["listen"]["value"] == "0.0.0.0:9000"
    assert rows["listen"]["where"] == f"{cfg}:3 listen" and rows["listen"]["source"] == "file"
    assert rows["device.id"]["value"] == "dev-7"
    assert (rows["threads"]["value"], rows["threads"]["source"]) == (1, "default")
    assert rows["trust_dir"]["value"] == "/s/trust"
    assert main(["config", "show"]) == 0
    assert "HOTSWAP_WORKERS" in capsys.readouterr().out


def test_every_daemon_option_is_a_config_key() -> None:
    """A new `hotswap run` flag is configurable once schemas/config.v1.json names its dest."""
    run = [a for a in options_by_dest(build_parser()).get("listen", [])]
    assert [a.default for a in run] == [("127.0.0.1", 8000)]  # only `run` listens
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    options = [a for a in sub.choices["run"]._actions if a.option_strings]
    dests = {a.dest for a in options} - {"help", "config_file"}
    keys = {k.dest for k in config_keys()}
    assert dests <= keys, f"add these to schemas/config.v1.json: {sorted(dests - keys)}"
