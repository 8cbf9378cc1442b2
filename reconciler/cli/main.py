"""The `hotswap` command line: run the daemon, show the plan, the status and the journal
(`rollback` / `retry`: reconciler.cli.operator; packages and keys: reconciler.cli.package).

Exit codes: 0 ok, 1 runtime failure, 2 usage or invalid input, 3 (`plan`) changes pending.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from reconciler.cli import operator as cli_operator
from reconciler.cli import package as cli_package

EXIT_OK, EXIT_FAILURE, EXIT_INVALID, EXIT_PENDING = 0, 1, 2, 3

EPILOG = """\
examples:
  hotswap run --desired desired/ --state-dir state/ --listen 127.0.0.1:8000
  hotswap plan                 # what the daemon would do now (exit 3 if anything is pending)
  hotswap status               # desired vs served, per model, with the last error
  hotswap journal --verify     # check the journal's hash chain
  hotswap rollback classifier --reason "v2 misbehaves"   # emergency: back to the standby now
  hotswap retry classifier     # try a quarantined (failed) desired version again
  hotswap keygen --out keys/   # a publisher key pair (the .pub goes into a device's trust dir)
  hotswap publish model.onnx --name classifier --version 5 --key keys/hotswap.key --out registry/

Desired state is one YAML file per model in the desired directory (see schemas/); the state
directory holds the model store, build cache, journal and status. Both default to ./desired and
./state, or $HOTSWAP_DESIRED_DIR and $HOTSWAP_STATE_DIR.
"""


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("hotswap")
    except Exception:
        return "0+unknown"


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(
            f"--listen wants HOST:PORT, e.g. 127.0.0.1:8000 (got {value!r})"
        )
    return host.strip("[]") or "127.0.0.1", int(port)


def _parse_size(value: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = value.strip().upper().removesuffix("IB").removesuffix("B")
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "")
    try:
        size = int(float(number) * units[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size like 512M or 2G, not {value!r}") from None
    if size <= 0:
        raise argparse.ArgumentTypeError(f"a positive size, not {value!r}")
    return size


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--desired",
        type=Path,
        default=Path(os.environ.get("HOTSWAP_DESIRED_DIR", "desired")),
        help="desired-state directory (may be a git-sync symlink; default: %(default)s)",
    )
    common.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("HOTSWAP_STATE_DIR", "state")),
        help="state directory: store, build cache, journal, status (default: %(default)s)",
    )

    parser = argparse.ArgumentParser(
        prog="hotswap",
        description="Keep the inference models on this device exactly as desired state says, swapping versions while serving.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hotswap {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        parents=[common],
        help="run the daemon: serve models and reconcile desired state",
        description="Serve the KServe V2 API and reconcile desired state continuously. One daemon per state directory.",
    )
    run.add_argument(
        "--listen",
        type=_parse_listen,
        default=("127.0.0.1", 8000),
        metavar="HOST:PORT",
        help="HTTP address (default: 127.0.0.1:8000; binds loopback unless told otherwise)",
    )
    run.add_argument(
        "--resync",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="periodic full resync besides file events (default: %(default)s)",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=None,
        help="inference worker threads (default: one per core)",
    )
    run.add_argument(
        "--memory-budget",
        type=_parse_size,
        default=None,
        metavar="SIZE",
        help="memory all loaded model instances may use, e.g. 512M or 2G (default: no limit"
        " but the GPU's free memory for TensorRT). When a new version cannot be loaded beside"
        " the serving one, the swap is sequential: unload, load, prove, or reload the old one on"
        " failure; the model is unavailable meanwhile and the journal records for how long",
    )
    run.add_argument(
        "--trt-workspace",
        type=_parse_size,
        default=None,
        metavar="SIZE",
        help="TensorRT builder workspace limit, e.g. 1G (default 1G); part of the engine cache key",
    )
    run.add_argument(
        "--trt-build-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="kill a TensorRT engine build that runs longer (default 1800)",
    )
    run.add_argument(
        "--access-log",
        action="store_true",
        help="log every inference request (model, version, status, latency, request id)",
    )
    run.add_argument(
        "--threads",
        type=int,
        default=1,
        help="ONNX Runtime intra-op threads per model instance (default: %(default)s; the worker"
        " pool gives parallelism across requests, so versions loaded side by side during a swap"
        " never oversubscribe the cores; raise it for large models served one request at a time)",
    )
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument(
        "--log-json",
        action="store_true",
        default=None,
        help="JSON logs even on a terminal (the default when not a TTY)",
    )
    cli_package.add_trust_dir_option(run)

    pl = sub.add_parser(
        "plan",
        parents=[common],
        help="print the steps the daemon would take now",
        description="Plan against the daemon's last status snapshot and the local store. Exit 0 in sync, 3 changes pending, 1 a desired version failed (quarantined), 2 invalid desired state.",
    )
    pl.add_argument("--json", action="store_true", help="machine-readable output")

    st = sub.add_parser(
        "status", parents=[common], help="desired vs observed per model, with the last error"
    )
    st.add_argument("--json", action="store_true", help="machine-readable output")

    jr = sub.add_parser(
        "journal", parents=[common], help="print or verify the journal of transitions"
    )
    jr.add_argument("--model", help="only this model's records")
    jr.add_argument("--json", action="store_true", help="one JSON object per line")
    jr.add_argument(
        "--verify",
        action="store_true",
        help="check the hash chain; exit 1 and name the first bad record if broken",
    )
    jr.add_argument("--tail", type=int, default=0, metavar="N", help="only the last N records")
    cli_package.add_commands(sub, common)  # keygen, sign, publish, verify
    cli_operator.add_commands(sub, common)  # rollback, retry
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    import signal
    import sqlite3

    import structlog
    import uvicorn

    from reconciler.cli.logs import configure
    from reconciler.loop.controller import Controller
    from reconciler.state.journal import Journal, VerifyResult
    from reconciler.state.lock import AlreadyRunning, StateLock
    from runtime import backends
    from runtime.serving.metrics import Metrics
    from runtime.serving.server import create_app
    from runtime.serving.slot import Repository

    configure(args.log_level, args.log_json)
    log = structlog.get_logger("hotswap")
    lock = StateLock(args.state_dir)
    try:
        lock.acquire()
    except AlreadyRunning as e:
        print(f"hotswap: {e}", file=sys.stderr)
        return EXIT_INVALID
    journal_path = args.state_dir / "journal.db"
    try:
        journal = Journal(journal_path)
        check = journal.verify()
    except sqlite3.DatabaseError as e:
        check = VerifyResult(False, 0, None, str(e))
    if not check.ok and check.first_bad_seq is None:
        # Unreadable is refused, not repaired in passing: what it held is evidence.
        print(
            f"hotswap: the journal {journal_path} cannot be read ({check.problem}). The daemon does"
            f" not run on a journal it cannot read. Keep it for inspection and start a new one:"
            f" mv {journal_path} {journal_path}.damaged (the daemon then serves what desired"
            " state asks for, fully verified again).",
            file=sys.stderr,
        )
        lock.release()
        return EXIT_FAILURE
    repo = Repository()
    backends.configure(
        "tensorrt", workspace_bytes=args.trt_workspace, build_timeout_s=args.trt_build_timeout
    )
    metrics = Metrics()
    metrics.watch_state(repo.describe, journal.size_bytes)
    controller = Controller(
        args.desired,
        args.state_dir,
        journal,
        repo,
        resync_s=args.resync,
        threads=args.threads,
        metrics=metrics,
        trust_dir=args.trust_dir,
        memory_budget=args.memory_budget,
    )
    host, port = args.listen
    log.info(
        "daemon.starting",
        desired=str(args.desired),
        state_dir=str(args.state_dir),
        listen=f"{host}:{port}",
        pid=os.getpid(),
    )
    if not check.ok:
        # Readable but edited: its records cannot say what was last promoted. Start from desired
        # state (every step verified again) rather than restore what the journal claims.
        log.error("journal.chain-broken", seq=check.first_bad_seq, problem=check.problem)
        journal.append(
            "-",
            "journal",
            "failed",
            detail={"problem": check.problem, "first_bad_seq": check.first_bad_seq},
        )
    controller.recover(restore=check.ok)
    app = create_app(
        repo,
        controller.ready,
        _version(),
        metrics=metrics,
        workers=args.workers,
        access_log=args.access_log,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
        )
    )
    # uvicorn re-raises a SIGTERM it caught once its own shutdown is done; under the default
    # handler that killed the process before the `finally` below stopped the controller and
    # closed the journal. This handler makes the re-raise (or a SIGTERM before uvicorn has
    # installed its own) a request to stop, so the shutdown always runs to the end.
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    controller.start()
    try:
        server.run()
    finally:
        controller.stop()
        journal.close()
        lock.release()
        log.info("daemon.stopped")
    return EXIT_OK if server.started else EXIT_FAILURE


def _observed_offline(state_dir: Path) -> Any:
    from reconciler.state.status import observed_from_snapshot, read_snapshot
    from runtime.backends import available_backends

    blob_dir, art_dir = state_dir / "store" / "sha256", state_dir / "artifacts"
    blobs = (
        frozenset(p.name for p in blob_dir.iterdir() if len(p.name) == 64)
        if blob_dir.is_dir()
        else frozenset()
    )
    arts = (
        frozenset(d.name for d in art_dir.iterdir() if (d / "meta.json").is_file())
        if art_dir.is_dir()
        else frozenset()
    )
    return observed_from_snapshot(read_snapshot(state_dir), blobs, arts, available_backends())


def _print_errors(errors: Any) -> None:
    for err in errors:
        print(f"error: {err.message}", file=sys.stderr)


def cmd_plan(args: argparse.Namespace) -> int:
    from reconciler.core.plan import plan
    from reconciler.source.load import read_desired
    from reconciler.state.status import read_snapshot

    desired = read_desired(args.desired)
    observed = _observed_offline(args.state_dir)
    # as the daemon plans: with the operator's overrides (`hotswap rollback`) applied
    planned, overrides = cli_operator.with_overrides(read_snapshot(args.state_dir), desired)
    steps = plan(planned, observed)
    # Desired versions that failed: the daemon will not retry them until desired state changes.
    failed = {
        name: observed.model(name).last_error or "failed"
        for name, spec in planned.models.items()
        if observed.model(name).failed_digest == spec.digest
    }
    if args.json:
        print(
            json.dumps(
                {
                    "steps": [{"model": s.model, "step": s.name, "text": str(s)} for s in steps],
                    "failed": failed,
                    "overrides": {m: o.describe() for m, o in sorted(overrides.items())},
                    "errors": [e.to_json() for e in desired.errors],
                },
                indent=2,
            )
        )
    else:
        _print_errors(desired.errors)
        for s in steps:
            print(f"- {s}")
        for name, o in sorted(overrides.items()):
            print(f"override: {name} {o.describe()}")
        for name, why in sorted(failed.items()):
            print(
                f"failed: {name} v{planned.models[name].version} is quarantined until desired state changes: {why}"
            )
        if not steps and not failed:
            print("in sync: nothing to do")
    if desired.errors:
        return EXIT_INVALID
    if steps:
        return EXIT_PENDING
    return EXIT_FAILURE if failed else EXIT_OK


def _instance_text(inst: dict[str, Any] | None) -> str:
    return f"v{inst['version']}" if inst else "-"


def _rollout_row(split: dict[str, Any] | None, target: Any) -> dict[str, Any] | None:
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


def cmd_status(args: argparse.Namespace) -> int:
    from reconciler.source.load import read_desired
    from reconciler.state.lock import StateLock
    from reconciler.state.status import read_snapshot

    snapshot = read_snapshot(args.state_dir) or {}
    running = StateLock(args.state_dir).held_by_other()
    desired = read_desired(args.desired)
    planned, overrides = cli_operator.with_overrides(snapshot, desired)  # `hotswap rollback`
    served = snapshot.get("models", {})
    rows = []
    for name in sorted(set(served) | set(desired.models)):
        m = served.get(name, {})
        spec = desired.models.get(name)
        target = planned.models.get(name)  # what the daemon serves for it: desired or override
        override = overrides.get(name)
        active = m.get("active")
        if target is None:
            state = "held (invalid file)" if name in desired.held_models() else "to unload"
        elif m.get("failed_digest") == target.digest:
            state = "failed (quarantined)"
        elif (
            active
            and active.get("version") == target.version
            and active.get("sha256") == target.sha256
        ):
            state = "overridden" if override else "in sync"
        elif running:
            state = "rolling back" if override else "updating"
        else:
            state = "pending"
        rows.append(
            {
                "model": name,
                "desired": spec.version if spec else None,
                "active": active,
                "candidate": m.get("candidate"),
                "standby": m.get("standby"),
                "state": state,
                "last_error": m.get("last_error"),
                "fetch": m.get("fetch"),  # {"bytes", "total"} while a download runs
                "override": cli_operator.override_row(override) if override else None,
                "rollout": _rollout_row(m.get("rollout"), target),
            }
        )
    report: dict[str, Any] = {
        "daemon": {
            "running": running,
            "pid": snapshot.get("pid"),
            "updated": snapshot.get("updated"),
            "ready": snapshot.get("ready"),
        },
        "revision": desired.revision,
        "models": rows,
        "errors": [e.to_json() for e in desired.errors],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    d = report["daemon"]
    print(
        f"daemon: {'running, pid ' + str(d['pid']) if running else 'not running'}; last update {d['updated'] or 'never'}; ready: {d['ready']}"
    )
    if desired.revision:
        print(f"desired revision: {desired.revision}")
    print(f"{'MODEL':<16} {'DESIRED':<9} {'ACTIVE':<9} {'CANDIDATE':<10} {'STANDBY':<9} STATE")
    for r in rows:
        print(
            f"{r['model']:<16} {('v' + r['desired']) if r['desired'] else '-':<9} {_instance_text(r['active']):<9} {_instance_text(r['candidate']):<10} {_instance_text(r['standby']):<9} {r['state']}"
        )
        auth = (r["active"] or {}).get("authorization") or {}
        if auth.get("unsigned_opt_in"):
            print("  UNSIGNED: served only because the device trust policy sets allow_unsigned")
        elif auth.get("keyid"):
            print(f"  signed by {auth['keyid']}, manifest {str(auth.get('manifest_sha256'))[:12]}")
        if r["fetch"]:
            done, total = r["fetch"]["bytes"], r["fetch"]["total"]
            print(f"  fetching: {done}/{total if total is not None else '?'} bytes")
        if r["rollout"]:
            print(f"  {r['rollout']['text']}")
        if r["override"]:
            print(f"  override: {r['override']['text']}")
        if r["last_error"]:
            print(f"  last error: {r['last_error']}")
        if r["state"] == "failed (quarantined)":
            print(
                f"  quarantined: not retried until desired state changes version;"
                f" `hotswap retry {r['model']}` tries it once more"
            )
    for e in desired.errors:
        print(f"invalid desired state: {e.message}")
    return EXIT_OK


def cmd_journal(args: argparse.Namespace) -> int:
    from reconciler.state.journal import Journal, JournalError

    try:
        journal = Journal(args.state_dir / "journal.db", readonly=True)
    except JournalError as e:
        print(f"hotswap: {e}", file=sys.stderr)
        return EXIT_INVALID
    try:
        return _journal(args, journal)
    finally:
        journal.close()


def _journal(args: argparse.Namespace, journal: Any) -> int:
    import sqlite3

    if args.verify:
        result = journal.verify()
        if result.ok:
            print(f"journal ok: {result.records} records, hash chain intact")
            return EXIT_OK
        where = f" at seq {result.first_bad_seq}" if result.first_bad_seq is not None else ""
        print(
            f"journal BROKEN{where}: {result.problem} ({result.records} records read)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    try:
        records = list(journal.records(args.model))
    except (sqlite3.Error, UnicodeDecodeError) as e:
        print(f"journal BROKEN: SQLite cannot read the journal: {e}", file=sys.stderr)
        return EXIT_FAILURE
    if args.tail:
        records = records[-args.tail :]
    for rec in records:
        try:
            print(_record_line(rec, args.json))
        except (TypeError, ValueError) as e:  # a damaged file: a blob or number where text was
            print(
                f"journal BROKEN at seq {rec.seq}: the record cannot be shown ({e});"
                " see hotswap journal --verify",
                file=sys.stderr,
            )
            return EXIT_FAILURE
    return EXIT_OK


def _record_line(rec: Any, as_json: bool) -> str:
    if as_json:
        return json.dumps(rec.to_json(), sort_keys=True)
    versions = f"{rec.from_version or '-'} -> {rec.to_version or '-'}"
    detail = rec.details
    note = (
        detail.get("message")
        or detail.get("step")
        or detail.get("why")
        or (
            f"stage {detail['stage']}/{detail.get('of', '?')} passed: {detail['verdict']}"
            if "verdict" in detail
            else ""
        )
    )
    if rec.step in ("override", "retry") and detail.get("user"):  # an operator's request
        note = note or f"by {detail['user']}: {detail.get('reason') or 'no reason given'}"
    return f"{rec.seq:>5} {rec.time[:23]} {rec.model:<14} {rec.step:<13} {rec.phase:<7} {versions:<12} {note}"


def main(argv: list[str] | None = None) -> int:
    args = cli_package.finish_args(build_parser().parse_args(argv))
    handler = {"run": cmd_run, "plan": cmd_plan, "status": cmd_status, "journal": cmd_journal}.get(
        args.command
    ) or args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
