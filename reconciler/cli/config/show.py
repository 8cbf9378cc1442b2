"""`hotswap config show`: the effective configuration and where each value came from.

Registered into the main parser by `reconciler.cli.main`. Reads what `layers.parse_args` kept
on the args (`args.resolved`), so it shows exactly what `hotswap run` with the same file,
environment and flags would use, and what `hotswap status` reads the state directory from.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from reconciler.cli.config.keys import config_keys
from reconciler.cli.config.layers import Resolved, Setting, plain
from reconciler.cli.exits import EXIT_OK

EPILOG = """\
precedence: a flag wins over the environment (HOTSWAP_<KEY>, e.g. HOTSWAP_STATE_DIR), the
environment over the config file (--config, else $HOTSWAP_CONFIG, else /etc/hotswap/config.yaml),
the file over the default. The file's format: schemas/config.v1.json; docs/config.md.
"""


def add_command(sub: Any, common_parent: argparse.ArgumentParser) -> None:
    cfg = sub.add_parser(
        "config",
        help="show the effective configuration (file, environment, flags)",
        description="The configuration shared by the daemon and every command.",
    )
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    show = cfg_sub.add_parser(
        "show",
        parents=[common_parent],
        help="print every setting, its value and where it came from",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(handler=cmd_show)


def effective(args: argparse.Namespace) -> list[Setting]:
    """Every key's value as this command line resolves it, with its source."""
    resolved: Resolved = args.resolved
    found: dict[str, Setting] = {}
    for key in config_keys():
        if key.dest in resolved.given:
            found[key.name] = Setting(key, getattr(args, key.dest), "flag", _flag(key.dest))
        elif key.name in resolved.layered:
            found[key.name] = resolved.layered[key.name]
        else:
            found[key.name] = Setting(key, resolved.defaults.get(key.dest), "default")
    trust = found.get("trust_dir")
    if trust is not None and trust.value is None:  # the default follows the state dir
        state = Path(found["state_dir"].value)
        found["trust_dir"] = Setting(trust.key, state / "trust", "default", "STATE_DIR/trust")
    return list(found.values())


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def cmd_show(args: argparse.Namespace) -> int:
    settings = effective(args)
    path = args.resolved.path
    if args.json:
        report = {"file": str(path) if path else None, "settings": [s.to_json() for s in settings]}
        print(json.dumps(report, indent=2))
        return EXIT_OK
    print(f"config file: {path if path else 'none (defaults, environment and flags only)'}")
    width = max(len(s.key.shown) for s in settings)
    for s in settings:
        value = plain(s.value)
        text = "-" if value is None else json.dumps(value) if isinstance(value, dict) else value
        source = f"{s.source} {s.where}".rstrip()
        print(f"{s.key.shown:<{width}}  {text!s:<28}  {source}")
    return EXIT_OK
