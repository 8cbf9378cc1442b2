"""`hotswap status --watch`: the status report redrawn live while the daemon works.

Called by `reconciler.cli.status` for `--watch`. It reads `status.json` as `hotswap status`
does (the daemon writes it after every change and, while a long step runs, up to twice a
second), so it needs no connection to the daemon and shows a stopped one's last state. On a
terminal it redraws with `rich`: the models, a progress bar per running step (bytes, rate and
ETA of a download; phase and elapsed time of an engine build) and the canary stage with its
live counts. Anywhere else it prints one line per change (`reconciler.state.summary`), which a
log or a CI job can keep. Ctrl-C leaves, with exit status 0 and no traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from reconciler.cli.exits import EXIT_OK
from reconciler.state.progress_record import StepProgressRecord

POLL_S = 0.25


def watch(args: argparse.Namespace) -> int:
    try:
        if sys.stdout.isatty():
            _live(args)
        else:
            _lines(args)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        sys.stderr.close()
    return EXIT_OK


def _report(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    from reconciler.cli.offline import read_view
    from reconciler.cli.status import status_report
    from reconciler.state.lock import StateLock

    view = read_view(args.desired, args.state_dir)
    running = StateLock(args.state_dir).held_by_other()
    return status_report(view, running), view.snapshot


def _lines(args: argparse.Namespace) -> None:
    from reconciler.state.summary import status_line

    last = None
    while True:
        report, snapshot = _report(args)
        running = "running" if report["daemon"]["running"] else "not running"
        line = f"{running}: {status_line(snapshot)}" if snapshot else f"{running}: no status yet"
        if line != last:
            print(line, flush=True)
            last = line
        time.sleep(POLL_S)


def _live(args: argparse.Namespace) -> None:
    from rich.live import Live

    with Live(render(_report(args)[0]), auto_refresh=False, transient=False) as live:
        while True:
            time.sleep(POLL_S)
            live.update(render(_report(args)[0]), refresh=True)


def render(report: dict[str, Any]) -> Any:
    """The report as a rich renderable: a header, a row per model, its running step and rollout."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    d = report["daemon"]
    state = f"running, pid {d['pid']}" if d["running"] else "not running"
    header = Text(f"daemon {state}; ready: {d['ready']}; updated {d['updated'] or 'never'}")
    table = Table(box=None, pad_edge=False)
    for column in ("MODEL", "DESIRED", "ACTIVE", "CANDIDATE", "STATE", "PROGRESS"):
        table.add_column(column)
    for r in report["models"]:
        step = StepProgressRecord.from_json(r.get("progress"))
        bar: Any = ""
        if step is not None:
            fraction = step.fraction
            bar = ProgressBar(
                total=1.0, completed=fraction or 0.0, pulse=fraction is None, width=30
            )
        table.add_row(
            r["model"],
            f"v{r['desired']}" if r["desired"] else "-",
            _version(r["active"]),
            _version(r["candidate"]),
            r["state"],
            bar,
        )
        if step is not None:
            table.add_row("", "", "", "", "", Text(progress_text(step), style="dim"))
        if r.get("rollout"):
            table.add_row("", Text(r["rollout"]["text"], style="cyan"), end_section=True)
    errors = [Text(f"invalid desired state: {e['message']}", style="red") for e in report["errors"]]
    return Group(header, table, *errors)


def _version(inst: dict[str, Any] | None) -> str:
    return f"v{inst['version']}" if inst else "-"


def progress_text(step: StepProgressRecord) -> str:
    """`fetch 12.0/48.0 MiB 25%, 4.0 MiB/s, ETA 9s` or `build (Building engine 3/8), 41s`."""
    parts = [step.step]
    if step.unit == "bytes" and step.done is not None:
        total = f"/{_mib(step.total)}" if step.total else ""
        parts.append(f"{_mib(step.done)}{total} MiB")
    elif step.done is not None:
        total = f"/{step.total}" if step.total else ""
        parts.append(f"{step.done}{total} {step.unit}".rstrip())
    if step.phase:
        parts.append(f"({step.phase})")
    if step.fraction is not None:
        parts.append(f"{step.fraction:.0%}")
    text = " ".join(parts)
    if step.rate and step.unit == "bytes":
        text += f", {_mib(int(step.rate))} MiB/s"
    if step.eta_s is not None:
        text += f", ETA {step.eta_s:.0f}s"
    return f"{text}, {step.elapsed_s:.0f}s elapsed"


def _mib(n: int | None) -> str:
    return f"{(n or 0) / (1 << 20):.1f}"
