"""Operator requests: how `hotswap rollback` and `hotswap retry` reach the running daemon.

Changes never come through the HTTP API (it only serves). The CLI writes a request file into
`<state>/requests/<id>.json` (atomically: temp file, fsync, rename), the daemon's watcher wakes
the loop, and the next pass takes every pending request, journals what it did with it (the
request id in the record's detail) and then removes the file. The CLI follows the journal to see
the outcome. Whoever may write the state directory may already change what is served, so a
request carries no credential; it carries who asked (`user`) and why (`reason`) for the record.

File format (JSON object, unknown fields refused):
    {"id": "<32 hex>", "action": "rollback" | "retry" | "cancel-rollback", "model": "classifier",
     "to": "1" | null, "reason": "...", "user": "alice", "requested_at": "<UTC ISO-8601>"}

A file that is not a valid request is reported (`Malformed`) so the daemon journals it as
refused and removes it; it never stops the loop. Nothing but a regular file of at most
`MAX_BYTES` is read (reconciler.operator.request_files): a symlink, FIFO, device or directory
named `<id>.json` is refused unread, with its `kind`. The id is also the file name, so a request the
daemon journaled but could not remove before a crash is recognised and not applied twice.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reconciler.operator.identity import requesting_user
from reconciler.operator.request_files import NotARequest, discard, read_bounded
from reconciler.state.atomic import TEMP_SUFFIX, atomic_write

DIRNAME = "requests"
ACTIONS = ("rollback", "retry", "cancel-rollback")
MAX_BYTES = 64 * 1024
MAX_REASON = 1000
_ID = re.compile(r"^[0-9a-f]{32}$")
_MODEL = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
_FIELDS = {"id", "action", "model", "to", "reason", "user", "requested_at"}


@dataclass(frozen=True)
class Request:
    id: str
    action: str
    model: str
    to: str | None = None
    reason: str = ""
    user: str = ""
    requested_at: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Malformed:
    """A file in the requests directory that is not a valid request."""

    id: str  # the file's stem
    message: str
    model: str | None = None  # when it could still be read
    kind: str | None = None  # what the entry is when it was not read: "fifo", "symlink", ...


def requests_dir(state_dir: Path) -> Path:
    return state_dir / DIRNAME


def submit(
    state_dir: Path, action: str, model: str, to: str | None = None, reason: str = ""
) -> tuple[Request, Path]:
    """Queue a request for the daemon (whether or not it runs now); returns it and its file."""
    request = Request(
        id=uuid.uuid4().hex,
        action=action,
        model=model,
        to=to,
        reason=reason,
        user=requesting_user(),
        requested_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
    )
    problem = _problem(request.to_json(), request.id)
    if problem:
        raise ValueError(problem)
    path = requests_dir(state_dir) / f"{request.id}.json"
    atomic_write(path, json.dumps(request.to_json(), indent=2, sort_keys=True).encode(), 0o600)
    return request, path


def _problem(data: Any, stem: str) -> str | None:
    """Why `data` (read from `<stem>.json`) is not a valid request, or None."""
    if not isinstance(data, dict):
        return "not a JSON object"
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        return f"unknown fields: {', '.join(map(str, unknown))}"
    missing = sorted(f for f in ("id", "action", "model") if f not in data)
    if missing:
        return f"missing fields: {', '.join(missing)}"
    for name in _FIELDS - {"to"}:
        if name in data and not isinstance(data[name], str):
            return f"{name} must be a string"
    if not _ID.match(data["id"]) or data["id"] != stem:
        return "id must be 32 hex digits and the file's name"
    if data["action"] not in ACTIONS:
        return f"action {data['action']!r} is not one of {', '.join(ACTIONS)}"
    if not _MODEL.match(data["model"]):
        return f"model {data['model']!r} is not a model name"
    to = data.get("to")
    if to is not None and (not isinstance(to, str) or not to or len(to) > 128):
        return "to must be a version (a non-empty string) or null"
    if to is not None and data["action"] != "rollback":
        return f"to applies only to rollback, not {data['action']}"
    if len(data.get("reason", "")) > MAX_REASON:
        return f"reason is longer than {MAX_REASON} characters"
    return None


def read(path: Path) -> Request | Malformed | None:
    """One request file, validated (None: it is gone)."""
    stem = path.name.removesuffix(".json")
    raw = read_bounded(path, MAX_BYTES)
    if raw is None:
        return None
    if isinstance(raw, NotARequest):
        return Malformed(stem, raw.message, kind=raw.kind)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        return Malformed(stem, f"{path.name} is not JSON: {e}")
    problem = _problem(data, stem)
    model = data.get("model") if isinstance(data, dict) else None
    model = model if isinstance(model, str) and _MODEL.match(model) else None
    if problem:
        return Malformed(stem, f"{path.name}: {problem}", model)
    known = {k: data[k] for k in _FIELDS if k in data}
    return Request(**known)


def pending(state_dir: Path) -> list[tuple[Path, Request | Malformed]]:
    """Every request waiting in the directory, oldest first (temp files of a writer skipped)."""
    directory = requests_dir(state_dir)
    try:
        entries = [
            p
            for p in directory.iterdir()
            if p.name.endswith(".json") and not p.name.startswith(".") and TEMP_SUFFIX not in p.name
        ]
    except OSError:
        return []
    # every kind of entry: what is not a regular file is refused and removed, never skipped
    found = [(p, got) for p in entries if (got := read(p)) is not None]

    def order(item: tuple[Path, Request | Malformed]) -> tuple[str, str]:
        req = item[1]
        return (req.requested_at if isinstance(req, Request) else "", item[0].name)

    return sorted(found, key=order)


def remove(path: Path) -> bool:
    """Remove a handled entry, whatever it is; False if it could not be removed."""
    return discard(path)
