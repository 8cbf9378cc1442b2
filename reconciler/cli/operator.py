"""`hotswap rollback | retry`: an operator's overrides, handed to the running daemon.

Registered into the main parser by `reconciler.cli.main` (`add_commands`). The command writes a
request into the state directory (reconciler.operator.channel) — never through the HTTP API, which only
serves — then follows the journal (the daemon records what it did with the request, under the
request's id) and the status snapshot (what is served: done when the version asked for is in
sync, `reconciler.core.insync`, as `hotswap status` would say) until the outcome is known or
`--wait` runs out. Exit codes: 0 done, 1 refused, failed, timed out or no daemon running (the request
then stays queued and is applied when the daemon starts), 2 usage.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.core.desired import ModelSpec

from reconciler.cli.exits import EXIT_FAILURE, EXIT_INVALID, EXIT_OK
from reconciler.core.names import Phase, StepName

POLL_S = 0.1

ROLLBACK_EPILOG = """\
examples:
  hotswap rollback classifier --reason "v2 misclassifies night images"
      back to the warm standby (or the version promoted before the active one)
  hotswap rollback classifier --to 1 --reason "known good"
      any version still in the local store (the message lists them)
  hotswap rollback classifier --cancel
      end the override early: desired state is served again

The override is journaled with your reason and user name and survives restarts. The daemon
honours it while desired state keeps asking for the version it overrode; when desired state
changes that model's version (a fix or a revert is pushed), the override ends by itself and the
new version is rolled out as usual. Emergencies do not canary: the rollback is immediate.
Exit 0 when the version is served, 1 refused / failed / timed out / daemon not running (the
request stays queued and is applied when it starts), 2 usage.
"""

RETRY_EPILOG = """\
example:
  hotswap retry classifier       # after fixing what made v3 fail (a trust key, the registry)

A desired version that failed terminally (bad signature, failed health check, ...) is
quarantined: the daemon does not retry it in a loop and keeps serving the good version.
A new desired version ends the quarantine; `retry` ends it for the same version, once.
Exit 0 when the new attempt succeeded (or is still running when --wait ends), 1 when it failed
again (quarantined again) or the daemon is not running, 2 usage.
"""


def add_commands(sub: Any, common_parent: argparse.ArgumentParser) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    rb = sub.add_parser(
        "rollback",
        parents=[common_parent],
        help="serve an earlier version now, overriding desired state until it changes version",
        description="Ask the running daemon to serve the warm standby, or --to a version in the"
        " local store, instead of the desired version: an operator's emergency switch.",
        epilog=ROLLBACK_EPILOG,
        formatter_class=raw,
    )
    rb.add_argument("model", metavar="MODEL", help="model name (metadata.name)")
    which = rb.add_mutually_exclusive_group()
    which.add_argument(
        "--to",
        metavar="VERSION",
        help="the version to serve (default: the warm standby, or the version promoted before;"
        " during a rollout, the version serving now: the rollout is abandoned)",
    )
    which.add_argument(
        "--cancel", action="store_true", help="end this model's override: serve desired state"
    )
    _reason_and_wait(rb)
    rb.set_defaults(handler=cmd_rollback)

    rt = sub.add_parser(
        "retry",
        parents=[common_parent],
        help="try a quarantined desired version again",
        description="Clear the quarantine of MODEL's desired version so the daemon tries it once"
        " more (and reset its retry backoff).",
        epilog=RETRY_EPILOG,
        formatter_class=raw,
    )
    rt.add_argument("model", metavar="MODEL", help="model name (metadata.name)")
    _reason_and_wait(rt)
    rt.set_defaults(handler=cmd_retry)


def _reason_and_wait(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reason", default="", metavar="TEXT", help="why, for the journal")
    p.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to follow the outcome (default: %(default)s; 0: only queue the request)",
    )


def _err(text: str) -> None:
    print(f"hotswap: {text}", file=sys.stderr)


def _queue(args: argparse.Namespace, action: str, to: str | None = None) -> Any:
    """Write the request; returns (request, path) or an exit code."""
    from reconciler.operator.channel import submit
    from reconciler.state.lock import StateLock

    state: Path = args.state_dir
    if not state.is_dir():
        _err(f"{state} is not a state directory (has the daemon run with it? see --state-dir)")
        return EXIT_INVALID
    try:
        request, path = submit(state, action, args.model, to, args.reason)
    except ValueError as e:
        _err(str(e))
        return EXIT_INVALID
    except OSError as e:
        _err(f"cannot write the request into {state}: {e}")
        return EXIT_FAILURE
    if not StateLock(state).held_by_other():
        _err(
            f"no daemon is running with state dir {state}; the request is queued ({path}) and"
            " will be applied when the daemon starts"
        )
        return EXIT_FAILURE
    if args.wait <= 0:
        print(f"{args.model}: {action} requested (id {request.id}); see hotswap status")
        return EXIT_OK
    return request, path


class _Follower:
    """Polls the journal (read-only, beside the daemon) and the status snapshot."""

    def __init__(self, args: argparse.Namespace, path: Path) -> None:
        self.state: Path = args.state_dir
        self.model: str = args.model
        self.desired_dir: Path = args.desired
        self.path = path
        self.deadline = time.monotonic() + args.wait
        self._journal: Any = None

    def records(self) -> list[Any]:
        from reconciler.state.journal import Journal, JournalError

        if self._journal is None:
            try:
                self._journal = Journal(self.state / "journal.db", readonly=True)
            except JournalError:
                return []
        return list(self._journal.records(self.model))

    def in_sync(self, spec: ModelSpec | None) -> bool:
        """The daemon's snapshot serves `spec` with nothing left to do (as `hotswap status`
        says "in sync" or "overridden")."""
        from reconciler.cli.offline import model_in_sync

        return spec is not None and model_in_sync(self.state, spec)

    def desired_spec(self) -> ModelSpec | None:
        from reconciler.source.load import read_desired

        return read_desired(self.desired_dir).models.get(self.model)

    def tick(self) -> str | None:
        """Sleep a poll interval; a reason to stop waiting, or None."""
        from reconciler.state.lock import StateLock

        if time.monotonic() > self.deadline:
            return "timeout"
        if not StateLock(self.state).held_by_other():
            return "stopped"
        time.sleep(POLL_S)
        return None

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()


def _answer(f: _Follower, request_id: str) -> Any:
    """Wait for the daemon's record of the request: the entry, or the reason it never came."""
    from reconciler.state import queries

    while True:
        entry = queries.answer(f.records(), request_id)
        if entry is not None:
            return entry
        stop = f.tick()
        if stop:
            return stop


def _not_answered(f: _Follower, why: str) -> int:
    if why == "stopped" and f.path.exists():
        _err(f"the daemon stopped; the request stays queued ({f.path}) for its next start")
    elif why == "stopped":
        _err("the daemon stopped; see hotswap journal for what became of the request")
    else:
        _err(f"the daemon has not taken the request within the wait; it stays queued ({f.path})")
    return EXIT_FAILURE


def _submit(
    args: argparse.Namespace,
    action: str,
    to: str | None,
    then: Callable[[_Follower, Any], int],
) -> int:
    """Queue the request, wait for the daemon's answer in the journal, and hand an accepted
    one to `then` (which follows it to its end); a refusal is printed with exit 1."""
    queued = _queue(args, action, to)
    if isinstance(queued, int):
        return queued
    from reconciler.state import queries

    request, path = queued
    f = _Follower(args, path)
    try:
        entry = _answer(f, request.id)
        if isinstance(entry, str):
            return _not_answered(f, entry)
        if entry.rec.phase == Phase.FAILED:
            _err(queries.message(entry) or "refused")
            return EXIT_FAILURE
        return then(f, entry)
    finally:
        f.close()


def cmd_rollback(args: argparse.Namespace) -> int:
    if args.cancel:
        return _submit(args, "cancel-rollback", args.to, _report_cancel)
    return _submit(args, "rollback", args.to, _follow_rollback)


def _report_cancel(f: _Follower, entry: Any) -> int:
    was = getattr(entry.body, "was_serving", None)
    print(f"{f.model}: override ended (was serving v{was}); desired state is served again")
    return EXIT_OK


def _follow_rollback(f: _Follower, entry: Any) -> int:
    from reconciler.state import queries
    from reconciler.state.records import OverrideCleared, OverrideSet

    rec, override = entry.rec, entry.body
    if not isinstance(override, OverrideSet):  # written by a later release: follow the status
        _err(f"the rollback is recorded (journal seq {rec.seq}); see hotswap status")
        return EXIT_FAILURE
    target = rec.to_version
    spec = override.spec
    while True:
        if f.in_sync(spec):
            was = f"v{rec.from_version}" if rec.from_version else "nothing"
            desired = override.desired_version
            until = (
                f"desired v{desired} is overridden until desired state changes version"
                if desired
                else "the override holds until the model's desired file is valid again"
            )
            if rec.from_version == target:  # rolled back during a rollout: it never left
                print(
                    f"{f.model}: rolled back to v{target} (the rollout of v{desired} is abandoned); {until}"
                )
            else:
                print(f"{f.model}: rolled back to v{target} (was {was}); {until}")
            return EXIT_OK
        for later in queries.after(f.records(), rec.seq):
            if later.rec.phase == Phase.FAILED and later.rec.to_version == target:
                _err(
                    f"rollback of {f.model} to v{target} failed at {later.rec.step}:"
                    f" {queries.message(later)}; see hotswap status"
                )
                return EXIT_FAILURE
            if isinstance(later.body, OverrideCleared):
                _err(f"the override ended before v{target} served: {later.body.why}")
                return EXIT_FAILURE
        stop = f.tick()
        if stop:
            _err(
                f"the rollback of {f.model} to v{target} is recorded (journal seq {rec.seq}) but"
                f" v{target} is not serving yet{' (the daemon stopped)' if stop == 'stopped' else ''};"
                " see hotswap status"
            )
            return EXIT_FAILURE


def cmd_retry(args: argparse.Namespace) -> int:
    return _submit(args, "retry", None, _follow_retry)


def _follow_retry(f: _Follower, entry: Any) -> int:
    from reconciler.state import queries
    from reconciler.state.records import RetryRequested, StepFailed

    rec, retry = entry.rec, entry.body
    if not isinstance(retry, RetryRequested):  # written by a later release
        retry = RetryRequested(request_id="")
    version = rec.to_version
    if retry.overridden:
        print(
            f"{f.model}: quarantine cleared, but an operator override is in force; desired"
            f" v{version} is tried when it ends (hotswap rollback {f.model} --cancel)"
        )
        return EXIT_OK
    cleared = retry.cleared_digest
    spec = None if cleared else f.desired_spec()
    print(
        f"{f.model}: "
        + (
            f"quarantine of v{version} cleared ({retry.previous_error}); trying again"
            if cleared
            else f"nothing was quarantined; the daemon reconciles v{version} now"
        ),
        flush=True,
    )
    while True:
        for later in queries.after(f.records(), rec.seq):
            done = later.rec.step == StepName.SWAP and later.rec.phase == Phase.DONE
            if done and later.rec.to_version == version:
                print(f"{f.model}: v{version} is serving")
                return EXIT_OK
            if later.rec.phase == Phase.FAILED and later.rec.to_version == version:
                terminal = isinstance(later.body, StepFailed) and later.body.terminal
                again = "quarantined again" if terminal else "will retry"
                _err(
                    f"{f.model} v{version} failed again at {later.rec.step}:"
                    f" {queries.message(later)} ({again})"
                )
                return EXIT_FAILURE
        if not cleared and f.in_sync(spec):
            print(f"{f.model}: v{version} is serving")
            return EXIT_OK
        stop = f.tick()
        if stop == "stopped":
            _err("the daemon stopped before the new attempt finished")
            return EXIT_FAILURE
        if stop:
            print(f"{f.model}: the new attempt of v{version} is still running; see hotswap status")
            return EXIT_OK
