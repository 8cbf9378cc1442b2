"""The status snapshot: `<state>/status.json`, written atomically by the daemon after every change.

`hotswap status`, `hotswap plan` and the operator commands run in other processes; they read
this snapshot rather than asking the daemon over HTTP, so they work with the daemon stopped
(showing the last known state) and need no control endpoint that could change what is served.
It carries everything they need to decide, as the daemon does, whether a model is in sync
(`reconciler.core.insync`): each instance's build key and the daemon's own backend versions
(`backend_versions`), which are part of the build key and which the CLI could not learn by
probing the backends itself (the daemon may run them with other options, e.g. a TensorRT
workspace).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler.core.desired import Desired, ModelSpec, batching_key
from reconciler.core.observed import InstanceInfo, ModelObserved, Observed
from reconciler.core.override import Override
from reconciler.core.reasons import reason
from reconciler.state.atomic import atomic_write
from reconciler.state.detail import Unreadable
from reconciler.state.operator_records import OverrideSet
from reconciler.state.progress_record import STATUS_FORMAT

FILENAME = "status.json"


def write_snapshot(
    state_dir: Path,
    desired: Desired | None,
    observed: Observed,
    repo_view: dict[str, Any],
    ready: bool,
    progress: dict[str, tuple[int, int | None]] | None = None,
    overrides: dict[str, Any] | None = None,
    reasons: Mapping[str, str] | None = None,
    passes: int = 0,
    store: Mapping[str, Any] | None = None,
    desired_commit: Mapping[str, Any] | None = None,
    steps: Mapping[str, dict[str, Any]] | None = None,
    journal: dict[str, Any] | None = None,
    device: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The body written, for the caller's one-line summary.

    `steps`: model -> its long step in progress (a `StepProgressRecord` as JSON);
    `reasons`: model -> reason code of its last failure; `passes`: planning passes so far
    (what a test or a script waits on instead of sleeping: "three more passes, and nothing");
    `store`: model -> its damaged store copies found and repairs in progress
    (reconciler.ops.repair); `desired_commit`: the signed-commit verdict on the desired
    checkout, when the trust dir asks for one (`reconciler.source.commits`); `journal`: what
    the journal's checks found at start (`JournalHealth.to_json()`); `device`: this device's
    id and labels (`DeviceIdentity.to_json`)."""
    models = _model_rows(desired, observed, repo_view, reasons)
    for name, row in models.items():
        spec = desired.models.get(name) if desired else None
        _add_in_flight(row, name, spec, store, progress, steps)
    body = {
        "format": STATUS_FORMAT,  # absent before progress records; readers ignore what they lack
        "pid": os.getpid(),
        "updated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
        "ready": ready,
        "passes": passes,
        "revision": desired.revision if desired else None,
        "models": models,
        "errors": [e.to_json() for e in desired.errors] if desired else [],
        # operator overrides in force (`hotswap rollback`): model -> override_entry()
        "overrides": overrides or {},
        # backend -> cache identity, as the daemon builds with them (part of every build key)
        "backend_versions": dict(observed.backend_versions),
        "journal": journal,
    }
    if desired_commit is not None:
        body["desired_commit"] = dict(desired_commit)
    if device is not None:
        body["device"] = dict(device)
    atomic_write(state_dir / FILENAME, json.dumps(body, indent=2, sort_keys=True).encode())
    return body


def _model_rows(
    desired: Desired | None,
    observed: Observed,
    repo_view: dict[str, Any],
    reasons: Mapping[str, str] | None,
) -> dict[str, Any]:
    """Per model desired or observed: what is wanted, what serves, its last failure."""
    models: dict[str, Any] = {}
    for name in sorted(set(observed.models) | set(desired.models if desired else {})):
        spec = desired.models.get(name) if desired else None
        obs = observed.model(name)
        models[name] = {
            "desired": {"version": spec.version, "digest": spec.digest, "file": spec.file}
            if spec
            else None,
            **repo_view.get(name, {"active": None, "candidate": None, "standby": None}),
            "failed_digest": obs.failed_digest,
            "last_error": obs.last_error,
            "last_failure": _failure(reasons.get(name)) if reasons else None,
        }
    return models


def _add_in_flight(
    entry: dict[str, Any],
    name: str,
    spec: ModelSpec | None,
    store: Mapping[str, Any] | None,
    progress: dict[str, tuple[int, int | None]] | None,
    steps: Mapping[str, dict[str, Any]] | None,
) -> None:
    """What is under way for one model: its rollout's length, store repairs, a running step."""
    if spec and entry.get("rollout"):  # how many stages, for one-line summaries
        entry["rollout"] = {**entry["rollout"], "stages": len(spec.rollout.stages)}
    if store and name in store:  # damaged copies found since start, repairs in progress
        entry["store"] = store[name]
    if progress and name in progress:  # a download in flight (0.1.0's field, still written)
        done, total = progress[name]
        entry["fetch"] = {"bytes": done, "total": total}
    if steps and name in steps:  # fetch, verify, build or warm-up running, with its progress
        entry["progress"] = steps[name]


def _failure(code: str | None) -> dict[str, str] | None:
    if code is None:
        return None
    entry = reason(code)
    return {"reason": code, "next": str(entry.next), "summary": entry.summary}


def read_snapshot(state_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((state_dir / FILENAME).read_text())
    except (OSError, ValueError):
        return None


def snapshot_backend_versions(snapshot: dict[str, Any] | None) -> dict[str, str] | None:
    """The daemon's backends (name -> cache identity) as it last wrote them; None when there is
    no snapshot or it was written by a daemon that did not record them (0.1.0)."""
    versions = (snapshot or {}).get("backend_versions")
    if not isinstance(versions, dict):
        return None
    return {str(k): str(v) for k, v in versions.items()}


def _instance(data: dict[str, Any] | None, default_healthy: bool = True) -> InstanceInfo | None:
    if not data:
        return None
    return InstanceInfo(
        version=str(data.get("version", "")),
        sha256=data.get("sha256", ""),
        build_key=data.get("build_key", ""),
        digest=data.get("digest", ""),
        healthy=bool(data.get("healthy", default_healthy)),
        source_file=data.get("source_file", ""),
        stages_passed=int(data.get("stages_passed", 0)),
        batching=batching_key(data.get("batching")),
    )


def observed_from_snapshot(
    snapshot: dict[str, Any] | None,
    blobs: frozenset[str],
    artifacts: frozenset[str],
    backend_versions: dict[str, str],
) -> Observed:
    models: dict[str, ModelObserved] = {}
    for name, m in (snapshot or {}).get("models", {}).items():
        models[name] = ModelObserved(
            name=name,
            active=_instance(m.get("active")),
            candidate=_instance(m.get("candidate"), default_healthy=False),
            standby=_instance(m.get("standby")),
            failed_digest=m.get("failed_digest"),
            last_error=m.get("last_error"),
        )
    return Observed(models, blobs, artifacts, tuple(sorted(backend_versions.items())))


def override_entry(override: Override) -> dict[str, Any]:
    """An override in the snapshot: its journal record's detail, and that record's seq and time."""
    return {**OverrideSet.of(override).to_detail(), "seq": override.seq, "set_at": override.set_at}


def overrides_from_snapshot(data: Any) -> dict[str, Override]:
    """The overrides a snapshot lists (`hotswap plan` / `status`), written by this release or
    0.1.0; an entry that cannot be read is left out."""
    found: dict[str, Override] = {}
    for model, entry in (data if isinstance(data, dict) else {}).items():
        try:
            body = OverrideSet.from_detail(entry)
            seq, set_at = entry.get("seq", 0), entry.get("set_at", "")
            found[model] = body.to_override(model, int(seq), str(set_at))
        except (Unreadable, AttributeError, TypeError, ValueError):
            continue
    return found
