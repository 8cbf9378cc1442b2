"""The daemon as its state directory shows it, for the commands that run beside it.

`hotswap plan`, `hotswap status` and the operator commands' follow-up (`reconciler.cli.operator`)
read the daemon's status snapshot and the local store instead of asking the daemon, so they work
with it stopped. From them this module rebuilds what the daemon plans with: desired state with
the operator's overrides applied, and observed state with the daemon's own backend versions
(which are part of every build key), so `reconciler.core.insync.in_sync` gives the answer the
daemon's planner would.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.core.desired import Desired, ModelSpec
from reconciler.core.insync import in_sync
from reconciler.core.observed import Observed
from reconciler.core.override import Override, effective_desired
from reconciler.source.load import read_desired
from reconciler.source.window import closed_windows
from reconciler.state.status import (
    observed_from_snapshot,
    overrides_from_snapshot,
    read_snapshot,
    snapshot_backend_versions,
)


@dataclass(frozen=True)
class DaemonView:
    snapshot: dict[str, Any]  # {} when the daemon never wrote one
    desired: Desired  # as the desired directory says now
    planned: Desired  # what the daemon serves: desired with the overrides applied
    overrides: dict[str, Override]  # still in force for this desired state
    observed: Observed


def desired_of(desired_dir: Path, state_dir: Path) -> Path:
    """`desired_dir`, or the built-in git source's link when only that exists (`run --git`)."""
    link = state_dir / "git" / "desired"
    if not desired_dir.exists() and link.exists():
        return link
    return desired_dir


def git_source_status(state_dir: Path) -> dict[str, Any] | None:
    """What the built-in git source last wrote (reconciler.loop.gitpoll), if it runs here."""
    try:
        data = json.loads((state_dir / "git" / "source.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_view(desired_dir: Path, state_dir: Path) -> DaemonView:
    snapshot = read_snapshot(state_dir) or {}
    desired = read_desired(desired_of(desired_dir, state_dir))
    planned, overrides = with_overrides(snapshot, desired)
    observed = observed_offline(state_dir, snapshot)
    # as the daemon judges update windows: by the wall clock now, a rollback never waiting
    now = dt.datetime.now(dt.timezone.utc)
    closed, _ = closed_windows(planned.models.values(), now, exempt=overrides)
    observed = dataclasses.replace(observed, closed_windows=closed)
    return DaemonView(snapshot, desired, planned, overrides, observed)


def with_overrides(
    snapshot: dict[str, Any] | None, desired: Desired
) -> tuple[Desired, dict[str, Override]]:
    """Desired state as the daemon plans it (its overrides, from its status snapshot, applied)
    and the overrides still in force for this desired state."""
    overrides = overrides_from_snapshot((snapshot or {}).get("overrides"))
    planned, ended = effective_desired(desired, overrides)
    over = {m for m, _ in ended}
    return planned, {m: o for m, o in overrides.items() if m not in over}


def observed_offline(state_dir: Path, snapshot: dict[str, Any] | None) -> Observed:
    """Observed state from the snapshot and the store and build cache on disk."""
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
    return observed_from_snapshot(snapshot, blobs, arts, _backend_versions(snapshot))


def model_in_sync(state_dir: Path, spec: ModelSpec) -> bool:
    """Is `spec` served as the daemon's last snapshot shows it, with nothing left to do?"""
    snapshot = read_snapshot(state_dir)
    return in_sync(spec, observed_offline(state_dir, snapshot))


def _backend_versions(snapshot: dict[str, Any] | None) -> dict[str, str]:
    versions = snapshot_backend_versions(snapshot)
    if versions is not None:
        return versions
    # No snapshot, or one written before snapshots recorded them: the best guess is this
    # machine's backends as they are installed (the daemon may add options, e.g. a TensorRT
    # workspace, that change the identity; its first snapshot then corrects this).
    from runtime.backends import available_backends

    return available_backends()
