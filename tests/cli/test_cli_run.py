"""`hotswap run`: its options reach the daemon's constructors (no attribute set afterwards)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from reconciler.cli import run as cli_run
from reconciler.cli.daemon import open_journal, wire
from reconciler.cli.main import build_parser
from reconciler.cli.package import finish_args


def test_sizes_and_addresses_are_checked_before_anything_starts() -> None:
    assert cli_run.parse_size("512M") == 512 << 20
    assert cli_run.parse_size("1.5GiB") == 3 << 29
    assert cli_run.parse_listen("[::1]:9000") == ("::1", 9000)
    for bad in ("0", "-1G", "lots"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli_run.parse_size(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        cli_run.parse_listen("8000")


def test_run_options_are_passed_to_the_controller_and_step_context(tmp_path: Path) -> None:
    state = tmp_path / "state"
    args = finish_args(
        build_parser().parse_args(
            ["run", "--state-dir", str(state), "--desired", str(tmp_path / "desired"),
             "--memory-budget", "256M", "--threads", "3", "--resync", "7", "--listen", "0.0.0.0:9001"]
        )
    )  # fmt: skip
    options = cli_run.daemon_options(args)
    opened = open_journal(state / "journal.db")
    assert opened is not None
    journal, health = opened
    try:
        daemon = wire(options, journal)
        ctx = daemon.controller.ctx
        assert ctx.memory.budget == 256 << 20
        assert ctx.instances.threads == 3
        assert daemon.controller.resync_s == 7
        assert daemon.controller.trust_dir == state / "trust"
        assert ctx.prepare._on_progress is not None and ctx.rollouts._on_candidate_error is not None
        assert (daemon.server.config.host, daemon.server.config.port) == ("0.0.0.0", 9001)
        ctx.background.shutdown()
    finally:
        journal.close()
    assert health.trusted and health.verdict == "ok"


def test_an_unreadable_journal_is_refused_with_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journal.db"
    path.write_bytes(b"this is not a SQLite database, it is 48 bytes long")
    assert open_journal(path, strict=True) is None
    assert f"mv {path} {path}.damaged" in capsys.readouterr().err
