"""`hotswap run`'s fleet options: the built-in git source, device identity, OTA scheduling.

Registered by `reconciler.cli.run` in one block; `daemon_fields` turns them into the
`DaemonOptions` fields the wiring (`reconciler.cli.daemon`) uses. Each dest is a config key's
flat name (`git.url` -> `git_url`, `device.labels` -> `device_labels`), so the config file and
`HOTSWAP_*` set them too (reconciler.cli.config.keys).
"""

from __future__ import annotations

import argparse
from typing import Any

from reconciler.core.device import ID_PATTERN, DeviceIdentity, labels_of, parse_label


def label_arg(text: str) -> tuple[str, str]:
    try:
        return parse_label(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def device_id_arg(text: str) -> str:
    if not ID_PATTERN.match(text):
        raise argparse.ArgumentTypeError(
            f"a device id is 1-128 letters, digits, . _ - (starting with a letter or digit),"
            f" not {text!r}"
        )
    return text


def add_fleet_options(run: argparse.ArgumentParser, parse_size: Any) -> None:
    git = run.add_argument_group("desired state from git (instead of a git-sync sidecar)")
    git.add_argument(
        "--git",
        dest="git_url",
        metavar="URL",
        default=None,
        help="clone this repository (file://, https://, ssh://) into STATE_DIR/git and serve"
        " what --ref names; the desired dir becomes STATE_DIR/git/desired",
    )
    git.add_argument("--ref", dest="git_ref", default="main", help="branch, tag or ref to follow")
    git.add_argument(
        "--git-path", dest="git_path", default="", metavar="DIR",
        help="the desired directory inside the repository (default: its root)",
    )  # fmt: skip
    git.add_argument(
        "--git-depth", dest="git_depth", type=int, default=1, metavar="N",
        help="fetch depth (default 1: shallow; 0: full history)",
    )  # fmt: skip
    git.add_argument(
        "--git-interval", dest="git_interval", type=float, default=None, metavar="SECONDS",
        help="seconds between fetches (default: --resync)",
    )  # fmt: skip
    device = run.add_argument_group("device identity")
    device.add_argument(
        "--device-id", dest="device_id", type=device_id_arg, default=None,
        help="this device's id in a fleet (default: /etc/machine-id, else the hostname)",
    )  # fmt: skip
    device.add_argument(
        "--label", dest="device_labels", type=label_arg, action="append", default=None,
        metavar="KEY=VALUE", help="a device label, e.g. --label ring=canary (repeatable)",
    )  # fmt: skip
    run.add_argument(
        "--download-rate-limit", dest="download_rate_limit", type=parse_size, default=None,
        metavar="BYTES_PER_S", help="cap model downloads at this rate, e.g. 2M (bytes/s)",
    )  # fmt: skip


def device_identity(args: argparse.Namespace) -> DeviceIdentity:
    from reconciler.cli.identity import default_device_id

    labels = labels_of(args.device_labels or [])
    return DeviceIdentity(args.device_id or default_device_id(), labels)


def daemon_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The DaemonOptions fields these options set."""
    from reconciler.source.gitsync import GitSourceConfig

    git = None
    if args.git_url:
        git = GitSourceConfig(args.git_url, args.git_ref, args.git_path or "", args.git_depth)
    return {
        "git": git,
        "git_interval_s": args.git_interval,
        "device": device_identity(args),
        "download_rate_limit": args.download_rate_limit,
    }
