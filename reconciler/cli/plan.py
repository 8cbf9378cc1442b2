"""`hotswap plan`: the steps the daemon would take now, from its last status snapshot.

Registered into the main parser by `reconciler.cli.main`. Plans exactly as the daemon does
(`reconciler.core.plan` over `reconciler.cli.offline.read_view`: desired state with the
operator's overrides, observed state with the daemon's backend versions), so "in sync" here is
`reconciler.core.insync` as in `hotswap status`. Exit 0 in sync, 3 changes pending, 1 a desired
version is quarantined, 2 invalid desired state.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from reconciler.cli.exits import EXIT_FAILURE, EXIT_INVALID, EXIT_OK, EXIT_PENDING


def add_command(sub: Any, common_parent: argparse.ArgumentParser) -> None:
    pl = sub.add_parser(
        "plan",
        parents=[common_parent],
        help="print the steps the daemon would take now",
        description="Plan against the daemon's last status snapshot and the local store. Exit 0 in sync, 3 changes pending, 1 a desired version failed (quarantined), 2 invalid desired state.",
    )
    pl.add_argument("--json", action="store_true", help="machine-readable output")
    pl.set_defaults(handler=cmd_plan)


def cmd_plan(args: argparse.Namespace) -> int:
    from reconciler.cli.offline import read_view
    from reconciler.core.insync import in_sync
    from reconciler.core.plan import plan, waits_for_window

    view = read_view(args.desired, args.state_dir)
    planned, observed = view.planned, view.observed
    steps = plan(planned, observed)
    # Desired versions that failed: the daemon will not retry them until desired state changes.
    failed = {
        name: observed.model(name).last_error or "failed"
        for name, spec in planned.models.items()
        if observed.model(name).failed_digest == spec.digest
    }
    synced = sorted(name for name, spec in planned.models.items() if in_sync(spec, observed))
    waiting = {  # prepared, or being prepared, while the swap waits for its update window
        name: str(spec.rollout.window.text)  # type: ignore[union-attr]
        for name, spec in planned.models.items()
        if not in_sync(spec, observed) and waits_for_window(spec, observed.model(name), observed)
    }
    if args.json:
        print(
            json.dumps(
                {
                    "steps": [{"model": s.model, "step": s.name, "text": str(s)} for s in steps],
                    "in_sync": synced,
                    "failed": failed,
                    "waiting_for_window": waiting,
                    "overrides": {m: o.describe() for m, o in sorted(view.overrides.items())},
                    "errors": [e.to_json() for e in view.desired.errors],
                },
                indent=2,
            )
        )
    else:
        _print_plan(view, steps, failed, waiting)
    if view.desired.errors:
        return EXIT_INVALID
    if steps or waiting:
        return EXIT_PENDING
    return EXIT_FAILURE if failed else EXIT_OK


def _print_plan(
    view: Any, steps: list[Any], failed: dict[str, str], waiting: dict[str, str]
) -> None:
    for err in view.desired.errors:
        print(f"error: {err.message}", file=sys.stderr)
    for s in steps:
        print(f"- {s}")
    for name, window in sorted(waiting.items()):
        version = view.planned.models[name].version
        print(f"waiting: {name} v{version}: waiting for update window {window} (prepared now)")
    for name, o in sorted(view.overrides.items()):
        print(f"override: {name} {o.describe()}")
    for name, why in sorted(failed.items()):
        print(
            f"failed: {name} v{view.planned.models[name].version} is quarantined until desired state changes: {why}"
        )
    if not steps and not failed and not waiting:
        print("in sync: nothing to do")
