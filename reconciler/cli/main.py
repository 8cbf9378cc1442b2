"""The `hotswap` command line: the parser and the dispatch to each command's module.

The console script (`hotswap = "reconciler.cli.main:main"`) and `python -m reconciler` both call
`main()`. Each command lives in its own module and registers itself on the parser
(`add_command(s)`), carrying its handler as `args.handler`:

    run                      reconciler.cli.run (options), reconciler.cli.daemon (the wiring)
    plan | status            reconciler.cli.plan, reconciler.cli.status (over cli.offline)
    journal                  reconciler.cli.journal
    rollback | retry         reconciler.cli.operator
    keygen | sign | publish | verify   reconciler.cli.package
    config show              reconciler.cli.config (the config file, environment and flags)
    validate                 reconciler.cli.validate (desired and config files, for CI)
    fleet status | rollout   reconciler.cli.fleet, reconciler.cli.fleet_rollout (over reconciler.fleet)

Exit codes (reconciler.cli.exits): 0 ok, 1 runtime failure, 2 usage or invalid input,
3 (`plan`) changes pending.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reconciler.cli import fleet as cli_fleet
from reconciler.cli import journal as cli_journal
from reconciler.cli import operator as cli_operator
from reconciler.cli import package as cli_package
from reconciler.cli import plan as cli_plan
from reconciler.cli import run as cli_run
from reconciler.cli import status as cli_status
from reconciler.cli.config import layers as cli_config
from reconciler.cli.config import show as cli_config_show
from reconciler.cli.exits import EXIT_FAILURE, EXIT_INVALID
from reconciler.cli.validate import command as cli_validate
from reconciler.cli.version import hotswap_version

EPILOG = """\
examples:
  hotswap run --desired desired/ --state-dir state/ --listen 127.0.0.1:8000
  hotswap plan                 # what the daemon would do now (exit 3 if anything is pending)
  hotswap status               # desired vs served, per model, with the last error
  hotswap journal --verify     # check the journal's hash chain
  hotswap validate desired/ --format github   # in CI: schema, models, interfaces
  hotswap config show          # the effective configuration and where each value came from
  hotswap rollback classifier --reason "v2 misbehaves"   # emergency: back to the standby now
  hotswap retry classifier     # try a quarantined (failed) desired version again
  hotswap keygen --out keys/   # a publisher key pair (the .pub goes into a device's trust dir)
  hotswap publish model.onnx --name classifier --version 5 --key keys/hotswap.key --out registry/

Desired state is one YAML file per model in the desired directory (see schemas/); the state
directory holds the model store, build cache, journal and status. Both default to ./desired and
./state. Every option of `run` (and these two) can be set in the config file
(/etc/hotswap/config.yaml, $HOTSWAP_CONFIG or --config) or as HOTSWAP_<KEY>
(HOTSWAP_STATE_DIR); a flag wins over the environment, which wins over the file:
`hotswap config show` says where each value came from.
"""


def _common_options() -> argparse.ArgumentParser:
    """--config, --desired and --state-dir, shared by every command that looks at a device.
    Their defaults (and every other option's) come from the config layer (`cli_config`)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        dest="config_file",
        type=Path,
        metavar="FILE",
        help="config file (default: $HOTSWAP_CONFIG, else /etc/hotswap/config.yaml if it exists)",
    )
    common.add_argument(
        "--desired",
        type=Path,
        default=Path("desired"),
        help="desired-state directory (may be a git-sync symlink; default: %(default)s)",
    )
    common.add_argument(
        "--state-dir",
        type=Path,
        default=Path("state"),
        help="state directory: store, build cache, journal, status (default: %(default)s)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="hotswap",
        description="Keep the inference models on this device exactly as desired state says, swapping versions while serving.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hotswap {hotswap_version()}")
    parser.add_argument(
        "--config",
        dest="config_file",
        type=Path,
        metavar="FILE",
        help="config file (see config show)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_run.add_command(sub, common)
    sub.choices["run"].add_argument(
        "--strict-journal",
        action="store_true",
        help="refuse to start on a journal SQLite cannot read (default: move it aside as"
        " journal.db.damaged-<time>, start a new one and serve desired state, fully verified)",
    )
    cli_plan.add_command(sub, common)
    cli_status.add_command(sub, common)
    cli_journal.add_command(sub, common)
    cli_package.add_commands(sub, common)  # keygen, sign, publish, verify
    cli_operator.add_commands(sub, common)  # rollback, retry
    cli_config_show.add_command(sub, common)  # config show
    cli_validate.add_command(sub)  # validate (CI on a GitOps repository)
    cli_fleet.add_command(sub, common)  # fleet status, fleet rollout (MQTT and git)
    return parser


def parse_args(argv: list[str], environ: dict[str, str] | None = None) -> argparse.Namespace:
    """The command line over the config file and the environment (flag > env > file > default)."""
    return cli_package.finish_args(cli_config.parse_args(build_parser, argv, environ))


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except cli_config.ConfigError as e:
        for problem in e.problems:
            print(f"hotswap: {problem}", file=sys.stderr)
        return EXIT_INVALID
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
