"""`hotswap fleet status | rollout`: the fleet seen and driven through its broker and its GitOps
repository, with no server of its own (docs/fleet.md).

Registered into the main parser by `reconciler.cli.main`. `status` reads the devices' retained
reports (`reconciler.fleet.observe`, `reconciler.fleet.summary`); `rollout` is
`reconciler.fleet.rollout` over a checkout (`reconciler.cli.fleet_rollout`). The broker comes
from `--broker` or the config file's `mqtt` section, as the daemon's does.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from reconciler.cli.exits import EXIT_FAILURE, EXIT_INVALID, EXIT_OK
from reconciler.cli.fleet_options import add_mqtt_options, mqtt_settings, parse_labels

UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str) -> float:
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h|)\s*", value)
    if not match:
        raise argparse.ArgumentTypeError(f"a duration like 2s, 60s or 10m, not {value!r}")
    return float(match.group(1)) * UNITS[match.group(2)]


def parse_label(value: str) -> str:
    parse_labels([value])  # checks KEY=VALUE
    return value


def add_command(sub: Any, common_parent: argparse.ArgumentParser) -> None:
    fleet = sub.add_parser("fleet", help="a fleet's state over MQTT, and ring rollouts over git")
    commands = fleet.add_subparsers(dest="fleet_command", required=True, metavar="COMMAND")
    status = commands.add_parser(
        "status",
        parents=[common_parent],
        help="one line per device from the retained reports; exit 1 if any is failed or offline",
    )
    add_mqtt_options(status, broker_flag="--broker", in_trust_dir=False)
    status.add_argument(
        "--label", dest="selector", action="append", type=parse_label, default=[],
        metavar="KEY=VALUE", help="only devices with this label (repeatable: all must match)",
    )  # fmt: skip
    status.add_argument(
        "--wait", type=parse_duration, default=2.0, metavar="DURATION",
        help="how long to wait for the retained reports at most (default: 2s)",
    )  # fmt: skip
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=cmd_status)
    from reconciler.cli import fleet_rollout

    fleet_rollout.add_command(commands, common_parent)


def cmd_status(args: argparse.Namespace) -> int:
    from reconciler.fleet.mqtt import MqttConfigError
    from reconciler.fleet.observe import BrokerUnreachable, FleetObserver
    from reconciler.fleet.summary import summarize

    settings = mqtt_settings(args)
    if settings is None:
        print(
            "hotswap: fleet status needs --broker (or mqtt.broker in the config)", file=sys.stderr
        )
        return EXIT_INVALID
    try:
        with FleetObserver(settings) as observer:
            states = observer.settle(args.wait)
    except MqttConfigError as e:
        print(f"hotswap: {e}", file=sys.stderr)
        return EXIT_INVALID
    except BrokerUnreachable as e:
        print(f"hotswap: {e}", file=sys.stderr)
        return EXIT_FAILURE
    summary = summarize(states.values(), parse_labels(args.selector))
    if args.json:
        print(json.dumps(summary.to_json(), indent=2, sort_keys=True))
    else:
        _print_table(summary)
    return EXIT_FAILURE if summary.unhealthy else EXIT_OK


def _print_table(summary: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from reconciler.fleet.summary import device_condition

    table = Table(box=None, pad_edge=False)
    for column in ("DEVICE", "STATUS", "MODELS", "COMMIT", "LABELS", "LAST ERROR"):
        table.add_column(column, overflow="fold")
    for d in summary.devices:
        models = " ".join(
            f"{n}={m.active or '-'}" + (f"(->{m.desired})" if m.desired != m.active else "")
            for n, m in sorted(d.models.items())
        )
        errors = "; ".join(f"{n}: {m.last_error}" for n, m in d.models.items() if m.last_error)
        labels = ",".join(f"{k}={v}" for k, v in sorted(d.labels.items()))
        commit = (d.desired_commit or "-")[:12]
        table.add_row(d.device, device_condition(d), models, commit, labels, errors or "-")
    console = Console(width=160)
    console.print(table)
    versions = ", ".join(f"{k}: {v}" for k, v in summary.by_version.items()) or "-"
    states = ", ".join(f"{k}: {v}" for k, v in summary.by_state.items()) or "-"
    console.print(f"{len(summary.devices)} devices; versions {versions}; states {states}")
