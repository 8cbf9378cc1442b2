"""`hotswap fleet rollout`: a version taken ring by ring through a GitOps checkout, every action a
commit (docs/fleet.md).

Registered by `reconciler.cli.fleet`. The decisions (who is in a ring, has it converged, which
gate failed) are `reconciler.fleet.rollout`'s; this module edits files, commits and pushes
(`reconciler.fleet.gitrepo`), wakes the fleet over MQTT with the new commit id and watches the
reports (`reconciler.fleet.observe`). The version's fields come from a release file
(`releases/<model>/<version>.yaml` by default, or `--from`): its `spec.model` and its
`spec.health.golden` replace the ring file's; the rest of each ring's file is kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from reconciler.cli.exits import EXIT_FAILURE, EXIT_INVALID, EXIT_OK
from reconciler.cli.fleet_options import add_mqtt_options, mqtt_settings


def add_command(commands: Any, common_parent: argparse.ArgumentParser) -> None:
    from reconciler.cli.fleet import parse_duration

    ro = commands.add_parser(
        "rollout", parents=[common_parent],
        help="commit a version to each ring in turn, waiting for its devices and checking gates",
    )  # fmt: skip
    add_mqtt_options(ro, broker_flag="--broker", in_trust_dir=False)
    ro.add_argument("--repo", type=Path, default=Path("."), help="the fleet's GitOps checkout")
    ro.add_argument("--model", required=True)
    ro.add_argument("--version", dest="target_version", required=True, metavar="VERSION")
    ro.add_argument("--from", dest="release", type=Path, default=None, metavar="FILE",
                    help="desired file of the version (default: REPO/releases/MODEL/VERSION.yaml)")  # fmt: skip
    ro.add_argument("--rings", default="canary,early,all", help="ring order (default: %(default)s)")
    ro.add_argument("--max-failed", type=int, default=0, help="failed devices a ring may have")
    ro.add_argument(
        "--max-offline", default="5%", help="offline devices (N or N%%) a ring may have"
    )
    ro.add_argument("--soak", type=parse_duration, default=60.0, help="healthy time per ring (60s)")
    ro.add_argument("--timeout", type=parse_duration, default=600.0, help="per ring (10m)")
    ro.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    ro.set_defaults(handler=cmd_rollout)


def cmd_rollout(args: argparse.Namespace) -> int:
    from reconciler.fleet import rollout
    from reconciler.fleet.gitrepo import GitError, is_clean
    from reconciler.fleet.mqtt import MqttConfigError
    from reconciler.fleet.observe import BrokerUnreachable

    repo: Path = args.repo.resolve()
    rings = [r.strip() for r in args.rings.split(",") if r.strip()]
    release_path = args.release or repo / "releases" / args.model / f"{args.target_version}.yaml"
    try:
        release = _release_doc(release_path, args.target_version)
        max_offline, share = rollout.parse_max_offline(args.max_offline)
    except (OSError, ValueError) as e:
        print(f"hotswap: {e}", file=sys.stderr)
        return EXIT_INVALID
    gates = rollout.Gates(args.max_failed, max_offline, share, args.soak, args.timeout)
    current = {ring: _version_in(repo / "rings" / ring / f"{args.model}.yaml") for ring in rings}
    steps = rollout.plan_rings(rings, args.model, args.target_version, current)
    for line in rollout.describe_plan(steps, args.model, gates):
        print(line)
    if args.dry_run:
        return EXIT_OK
    settings = mqtt_settings(args)
    if settings is None:
        print("hotswap: fleet rollout needs --broker (or mqtt.broker)", file=sys.stderr)
        return EXIT_INVALID
    try:
        if not is_clean(repo, "rings"):
            print(f"hotswap: {repo}/rings has uncommitted changes; commit or stash them first",
                  file=sys.stderr)  # fmt: skip
            return EXIT_INVALID
        return _drive(repo, args.model, release, steps, gates, settings)
    except MqttConfigError as e:
        print(f"hotswap: {e}", file=sys.stderr)
        return EXIT_INVALID
    except (GitError, BrokerUnreachable) as e:
        print(f"hotswap: {e}", file=sys.stderr)
        return EXIT_FAILURE


def _release_doc(path: Path, version: str) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    model = (doc or {}).get("spec", {}).get("model", {}) if isinstance(doc, dict) else {}
    if str(model.get("version")) != version:
        raise ValueError(f"{path}: spec.model.version is {model.get('version')!r}, not {version!r}")
    return doc


def _version_in(path: Path) -> str | None:
    try:
        doc = yaml.safe_load(path.read_text())
        return str(doc["spec"]["model"]["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def edited(ring_file: bytes | None, release: dict[str, Any]) -> bytes:
    """The ring's desired file with the release's version-bound fields (a new file: the release)."""
    doc = yaml.safe_load(ring_file) if ring_file else None
    if not isinstance(doc, dict) or not isinstance(doc.get("spec"), dict):
        doc = dict(release)
    spec = doc["spec"]
    spec["model"] = dict(release["spec"]["model"])
    golden = (release["spec"].get("health") or {}).get("golden")
    if golden is not None:
        spec.setdefault("health", {})["golden"] = golden
    return yaml.safe_dump(doc, sort_keys=False).encode()


def _drive(repo: Path, model: str, release: dict[str, Any], steps: list[Any], gates: Any,
           settings: Any) -> int:  # fmt: skip
    from reconciler.fleet.observe import FleetObserver
    from reconciler.fleet.rollout import STOPPED

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    rollout_id = f"{model}-v{steps[0].after}-{stamp}"
    changed: list[tuple[Any, bytes | None]] = []  # (step, the ring file before)
    with FleetObserver(settings, client_id=f"hotswap-rollout-{stamp}") as observer:
        observer.settle(2.0)
        for step in steps:
            if step.changes:
                before = _read(repo / step.path)
                message = f"rollout {rollout_id}: ring {step.ring}: {model} {step.before or '(none)'} -> {step.after}"
                _commit_and_wake(repo, step.path, edited(before, release), message, observer)
                changed.append((step, before))
            verdict = _watch_ring(observer, step, model, gates)
            if verdict.outcome == STOPPED:
                _report_stop(verdict)
                _revert(repo, rollout_id, model, changed, verdict.reason, observer)
                return EXIT_FAILURE
    print(f"rollout {rollout_id}: done, {model} {steps[-1].after} on every ring")
    return EXIT_OK


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _commit_and_wake(
    repo: Path, path: str, content: bytes | None, message: str, observer: Any
) -> str:
    from reconciler.fleet import topics
    from reconciler.fleet.gitrepo import commit, push_if_remote, write_file

    write_file(repo, path, content)
    sha = commit(repo, path, message)
    pushed = push_if_remote(repo)
    print(f"{sha[:12]} {message}" + (" (pushed)" if pushed else ""))
    # the devices fetch now rather than at their next poll; the message carries only the commit
    observer.client.publish(topics.fleet_sync(observer.settings.topic_prefix), sha, qos=1)
    return sha


def _watch_ring(observer: Any, step: Any, model: str, gates: Any) -> Any:
    from reconciler.fleet.rollout import PASSED, SOAKING, STOPPED, judge_ring

    started = time.monotonic()
    converged_at: float | None = None
    shown = ""
    while True:
        now = time.monotonic()
        soaked = None if converged_at is None else now - converged_at
        verdict = judge_ring(observer.states().values(), step.ring, model, step.after, gates,
                             now - started, soaked)  # fmt: skip
        if verdict.outcome == SOAKING and converged_at is None:
            converged_at = now
        elif verdict.outcome not in (SOAKING, PASSED):
            converged_at = None  # a device left the version: the soak starts over
        line = verdict.line() if verdict.outcome != SOAKING else f"ring {step.ring}: soaking"
        if line != shown:
            print(verdict.line(), flush=True)
            shown = line
        if verdict.outcome in (PASSED, STOPPED):
            return verdict
        time.sleep(0.2)


def _report_stop(verdict: Any) -> None:
    print(f"stopped at ring {verdict.ring}: {verdict.reason}", file=sys.stderr)
    for device, why in sorted(verdict.failed.items()):
        print(f"  {device}: failed: {why}", file=sys.stderr)
    for device in verdict.offline:
        print(f"  {device}: offline", file=sys.stderr)
    for device in verdict.pending:
        print(f"  {device}: not serving the version yet", file=sys.stderr)


def _revert(repo: Path, rollout_id: str, model: str, changed: list[Any], reason: str,
            observer: Any) -> None:  # fmt: skip
    for step, before in reversed(changed):
        message = (f"rollout {rollout_id}: revert ring {step.ring}: {model} {step.after} ->"
                   f" {step.before or '(none)'} ({reason})")  # fmt: skip
        _commit_and_wake(repo, step.path, before, message, observer)
