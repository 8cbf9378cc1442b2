"""`hotswap status`: desired vs served, per model, with the last error.

Registered into the main parser by `reconciler.cli.main`. Reads the daemon's status snapshot
(`reconciler.cli.offline.read_view`), so it works with the daemon stopped; whether a model is
"in sync" is `reconciler.core.insync.in_sync`, the planner's own answer, so status never says
"in sync" for a model `hotswap plan` would still change (after a backend upgrade, say).
`--json` is the same report as data; the end-to-end tests read it.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from reconciler.cli.exits import EXIT_OK

if TYPE_CHECKING:
    from reconciler.cli.offline import DaemonView
    from reconciler.core.desired import ModelSpec
    from reconciler.core.override import Override


def add_command(sub: Any, common_parent: argparse.ArgumentParser) -> None:
    st = sub.add_parser(
        "status", parents=[common_parent], help="desired vs observed per model, with the last error"
    )
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.add_argument(
        "--watch",
        action="store_true",
        help="redraw live (progress bars, canary counts) until Ctrl-C; one line per change"
        " when the output is not a terminal",
    )
    st.set_defaults(handler=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    from reconciler.cli.offline import git_source_status, read_view
    from reconciler.state.lock import StateLock

    if getattr(args, "watch", False):
        from reconciler.cli.watch import watch

        return watch(args)
    view = read_view(args.desired, args.state_dir)
    running = StateLock(args.state_dir).held_by_other()
    report = status_report(view, running)
    report["git"] = git_source_status(args.state_dir)  # the built-in git source, when it runs
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(report)
    return EXIT_OK


def status_report(view: DaemonView, running: bool) -> dict[str, Any]:
    snapshot = view.snapshot
    served = snapshot.get("models", {})
    names = sorted(set(served) | set(view.desired.models))
    return {
        "daemon": {
            "running": running,
            "pid": snapshot.get("pid"),
            "updated": snapshot.get("updated"),
            "ready": snapshot.get("ready"),
        },
        "revision": view.desired.revision,
        "models": [_row(name, served.get(name, {}), view, running) for name in names],
        "errors": [e.to_json() for e in view.desired.errors],
        # the daemon's verdict on the desired commit, when the trust dir requires signed ones
        "desired_commit": snapshot.get("desired_commit"),
        # what the journal's checks found at the daemon's start (None: a daemon before them)
        "journal": snapshot.get("journal"),
        "device": snapshot.get("device"),  # {"id", "labels"} (reconciler.core.device)
    }


def model_state(name: str, view: DaemonView, running: bool) -> str:
    """One word or two for where the model stands; "in sync" (or "overridden", when an
    operator's rollback is what is served) exactly when the planner has nothing left to do."""
    from reconciler.core.insync import in_sync
    from reconciler.core.plan import waits_for_window

    target = view.planned.models.get(name)  # what the daemon serves for it: desired or override
    overridden = name in view.overrides
    if target is None:
        return "held (invalid file)" if name in view.desired.held_models() else "to unload"
    if view.observed.model(name).failed_digest == target.digest:
        return "failed (quarantined)"
    if in_sync(target, view.observed):
        return "overridden" if overridden else "in sync"
    if waits_for_window(target, view.observed.model(name), view.observed):
        return f"waiting for update window {target.rollout.window.text}"  # type: ignore[union-attr]
    if running:
        return "rolling back" if overridden else "updating"
    return "pending"


def _row(name: str, served: dict[str, Any], view: DaemonView, running: bool) -> dict[str, Any]:
    spec = view.desired.models.get(name)
    override = view.overrides.get(name)
    return {
        "model": name,
        "desired": spec.version if spec else None,
        "active": served.get("active"),
        "candidate": served.get("candidate"),
        "standby": served.get("standby"),
        "state": model_state(name, view, running),
        "last_error": served.get("last_error"),
        "last_failure": served.get("last_failure"),  # {"reason", "next", "summary"}
        "fetch": served.get("fetch"),  # {"bytes", "total"} while a download runs
        "progress": served.get("progress"),  # a StepProgressRecord while a long step runs
        "override": override_row(override) if override else None,
        "rollout": rollout_row(served.get("rollout"), view.planned.models.get(name)),
        "store": store_row(served.get("store")),
    }


def store_row(health: dict[str, Any] | None) -> dict[str, Any] | None:
    """Damaged store copies found since the daemon started, as figures and one line."""
    if not health or (not health.get("damaged") and not health.get("repairing")):
        return None
    recent = health.get("recent") or []
    last = recent[-1] if recent else None
    repairing = health.get("repairing") or []
    if repairing:
        fix = ", ".join(f"{r['kind']} {str(r['what'])[:12]}" for r in repairing)
        state = f"repairing: {fix}"
    else:
        state = "repaired"
    count = health.get("damaged", 0)
    if not count:  # found before the daemon last started, still being repaired
        return {**health, "text": f"store: {state} (found damaged before this start)"}
    what = f"; last: {last['kind']} of v{last['version']}" if last else ""
    moved = f", kept at {last['moved_to']}" if last and last.get("moved_to") else ""
    return {**health, "text": f"store damaged {count}x since start{what}{moved}; {state}"}


def override_row(override: Override) -> dict[str, Any]:
    """An override in `hotswap status --json` (its full spec stays in the snapshot)."""
    return {
        "version": override.spec.version,
        "desired_version": override.desired_version,
        "reason": override.reason,
        "user": override.user,
        "request_id": override.request_id,
        "seq": override.seq,
        "set_at": override.set_at,
        "text": override.describe(),
    }


def rollout_row(split: dict[str, Any] | None, target: ModelSpec | None) -> dict[str, Any] | None:
    """A rollout stage in progress, as figures and one line for people."""
    if not split:
        return None
    stages = target.rollout.stages if target is not None else ()
    stage = split["stage"]
    cand, active = split["candidate"], split["active"]
    share = f"{split['weight']:g}% of requests"
    what = (
        f"{share} answered by the candidate" if split["mode"] == "canary" else f"{share} mirrored"
    )
    length = f" of {stages[stage].duration}" if stage < len(stages) else ""
    p99 = f", p99 {cand['p99_ms']} ms (active {active['p99_ms']} ms)" if cand["p99_ms"] else ""
    text = (
        f"{split['mode']} stage {stage + 1}/{len(stages) or '?'}: {what},"
        f" {split['elapsed_s']:.0f}s{length} in; candidate {cand['requests']} requests,"
        f" {cand['errors']} failed{p99}"
    )
    return {**split, "stages": len(stages), "text": text}


def _instance_text(inst: dict[str, Any] | None) -> str:
    return f"v{inst['version']}" if inst else "-"


def _print_report(report: dict[str, Any]) -> None:
    d = report["daemon"]
    running = d["running"]
    print(
        f"daemon: {'running, pid ' + str(d['pid']) if running else 'not running'}; last update {d['updated'] or 'never'}; ready: {d['ready']}"
    )
    _print_fleet(report)
    if report["revision"]:
        print(f"desired revision: {report['revision']}")
    journal = report.get("journal") or {}
    if journal.get("verdict", "ok") != "ok":
        what = "NOT TRUSTED, nothing restored from it" if not journal.get("trusted") else "trusted"
        print(f"JOURNAL {str(journal['verdict']).upper()} ({what}): {journal.get('problem')}")
    print(f"{'MODEL':<16} {'DESIRED':<9} {'ACTIVE':<9} {'CANDIDATE':<10} {'STANDBY':<9} STATE")
    for r in report["models"]:
        print(
            f"{r['model']:<16} {('v' + r['desired']) if r['desired'] else '-':<9} {_instance_text(r['active']):<9} {_instance_text(r['candidate']):<10} {_instance_text(r['standby']):<9} {r['state']}"
        )
        _print_details(r)
    for e in report["errors"]:
        print(f"invalid desired state: {e['message']}")
    commit = report.get("desired_commit")
    if commit and not commit.get("ok"):
        print(
            f"desired commit {commit.get('commit') or '?'} NOT ACTED ON [{commit.get('reason')}]:"
            f" {commit.get('message')}; signer: {commit.get('signer') or commit.get('key') or '-'}"
        )


def _print_progress(data: Any) -> None:
    from reconciler.cli.watch import progress_text
    from reconciler.state.progress_record import StepProgressRecord

    step = StepProgressRecord.from_json(data)
    if step is not None:
        print(f"  {progress_text(step)}")


def _print_fleet(report: dict[str, Any]) -> None:
    device = report.get("device")
    if device:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(device.get("labels", {}).items()))
        print(f"device: {device.get('id')}" + (f" ({labels})" if labels else ""))
    git = report.get("git")
    if git:
        serving = (git.get("serving") or "nothing yet")[:12]
        print(f"git: {git.get('url')} {git.get('ref')} {git.get('path') or '.'}; serving {serving}")
        if git.get("last_error"):
            print(f"  fetch failing ({git.get('failures')} in a row): {git['last_error']}")
        if git.get("refused"):
            print(f"  commit refused: {git['refused'].get('message')}")


def _print_details(r: dict[str, Any]) -> None:
    auth = (r["active"] or {}).get("authorization") or {}
    if auth.get("unsigned_opt_in"):
        print("  UNSIGNED: served only because the device trust policy sets allow_unsigned")
    elif auth.get("keyid"):
        print(f"  signed by {auth['keyid']}, manifest {str(auth.get('manifest_sha256'))[:12]}")
    if r["fetch"]:
        done, total = r["fetch"]["bytes"], r["fetch"]["total"]
        print(f"  fetching: {done}/{total if total is not None else '?'} bytes")
    _print_progress(r.get("progress"))
    if r["rollout"]:
        print(f"  {r['rollout']['text']}")
    if r.get("store"):
        print(f"  {r['store']['text']}")
    if r["override"]:
        print(f"  override: {r['override']['text']}")
    if r["last_error"]:
        print(f"  last error: {r['last_error']}")
    failure = r.get("last_failure")
    if failure and failure["next"] != "quarantine":
        print(f"  reason: {failure['reason']} ({failure['summary']}); next: {failure['next']}")
    if r["state"] == "failed (quarantined)":
        print(
            f"  quarantined: not retried until desired state changes version;"
            f" `hotswap retry {r['model']}` tries it once more"
        )
