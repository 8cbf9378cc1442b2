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
        assert (
            ctx.prepare.steps._on_change is not None
            and ctx.rollouts._on_candidate_error is not None
        )
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


def test_grpc_listens_beside_http_by_default_and_can_be_turned_off(tmp_path: Path) -> None:
    def options(*extra: str) -> cli_run.DaemonOptions:
        argv = ["run", "--state-dir", str(tmp_path / "state"), *extra]
        return cli_run.daemon_options(finish_args(build_parser().parse_args(argv)))

    assert options().grpc_listen == ("127.0.0.1", 8001)
    assert options("--grpc-listen", "0.0.0.0:9101").grpc_listen == ("0.0.0.0", 9101)
    assert options("--grpc-listen", "none").grpc_listen is None
    with pytest.raises(argparse.ArgumentTypeError, match="or none"):
        cli_run.parse_grpc_listen("8001")
    opened = open_journal(tmp_path / "journal.db")
    assert opened is not None
    journal, _ = opened
    try:
        on, off = wire(options(), journal), wire(options("--grpc-listen", "none"), journal)
        assert on.grpc is not None and on.grpc.address == "127.0.0.1:8001"  # not bound yet
        assert off.grpc is None
        for daemon in (on, off):
            daemon.controller.ctx.background.shutdown()
    finally:
        journal.close()


def test_probe_limits_are_flags_that_reach_the_prober(tmp_path: Path) -> None:
    base = ["run", "--state-dir", str(tmp_path / "s"), "--desired", str(tmp_path / "d")]
    parse = build_parser().parse_args
    options = cli_run.daemon_options(
        finish_args(parse([*base, "--probe-timeout", "5", "--probe-memory", "2G"]))
    )
    assert (options.probe_timeout, options.probe_memory, options.probe) == (5.0, 2 << 30, True)
    assert cli_run.daemon_options(finish_args(parse([*base, "--no-probe"]))).probe is False
    defaults = cli_run.daemon_options(finish_args(parse(base)))
    assert (defaults.probe_timeout, defaults.probe_memory) == (60.0, None)
    opened = open_journal(tmp_path / "journal.db")
    assert opened is not None
    try:
        ctx = wire(options, opened[0]).controller.ctx
        assert ctx.prober.settings.timeout_s == 5.0 and ctx.prober.settings.memory_bytes == 2 << 30
        ctx.background.shutdown()
    finally:
        opened[0].close()
