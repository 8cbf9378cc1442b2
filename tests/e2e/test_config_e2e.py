"""One config file, no flags: the daemon serves by it and `hotswap status` finds that daemon."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.daemon import Daemon
from tests.support.kit import Kit

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.daemon


def test_the_daemon_and_every_command_read_one_config_file(tmp_path: Path, kit: Kit) -> None:
    d = Daemon(tmp_path / "desired", tmp_path / "var" / "state", tmp_path / "daemon.log")
    etc = tmp_path / "etc"
    (etc / "trust").mkdir(parents=True)
    shutil.copyfile(kit.public_key, etc / "trust" / "publisher.pub")  # not under the state dir
    config = etc / "config.yaml"
    config.write_text(
        "# yaml-language-server: $schema=https://hotswap.dev/schemas/config.v1.json\n"
        f"desired_dir: ../desired\nstate_dir: {d.state}\ntrust_dir: trust\n"
        f"listen: 127.0.0.1:{d.port}\nlog_json: true\n"
    )
    kit.write(d.desired, "1")
    elsewhere = tmp_path / "elsewhere"  # the commands' working directory has no desired/ or state/
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOTSWAP_CONFIG": str(config)}
    env.pop("HOTSWAP_CRASHPOINT", None)
    with d.log_path.open("ab") as log:
        d.proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "run"],
            stdout=log,
            stderr=log,
            env=env,
            cwd=elsewhere,
        )
    try:
        d.wait_version("1", timeout=60)
        cli = [sys.executable, "-m", "reconciler"]
        done = subprocess.run([*cli, "status", "--json"], capture_output=True, text=True, env=env, cwd=elsewhere, timeout=60)  # fmt: skip
        report = json.loads(done.stdout)
        assert report["daemon"]["running"] and report["models"][0]["state"] == "in sync"
        shown = subprocess.run([*cli, "config", "show", "--json"], capture_output=True, text=True, env=env, cwd=elsewhere, timeout=60)  # fmt: skip
        rows = {s["key"]: s for s in json.loads(shown.stdout)["settings"]}
        assert rows["trust_dir"]["value"] == str(etc / "trust")
        assert rows["state_dir"]["where"] == f"{config}:3 state_dir"
    finally:
        d.stop()
    assert d.proc.returncode == 0, d.log_tail()
