"""The journal records of an operator's requests: `hotswap rollback` (override set, cleared,
refused) and `hotswap retry`, written by `reconciler.operator.handler` and read back through
`reconciler.state.queries` (which replays the overrides in force) and the status snapshot.

Types and compatibility as in `reconciler.state.records`, which reads these back with the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.core.desired import ModelSpec
from reconciler.core.names import Event, Phase
from reconciler.core.override import Override
from reconciler.state.detail import (
    SPEC_SCHEMA,
    SPEC_SCHEMA_KEY,
    Typed,
    get,
    schema_of,
    spec_from_record,
    spec_to_record,
)

# -- an operator's requests (`hotswap rollback | retry`) -----------------------------------------
_OVERRIDE = frozenset({Event.OVERRIDE.value})


@dataclass(frozen=True)
class OverrideSet(Typed):
    """`hotswap rollback`: serve `spec` while desired state asks for `desired_version` (None:
    set while the model's desired file was invalid). The status snapshot lists the same detail,
    plus the record's seq and time."""

    PHASE = Phase.DONE.value
    STEPS = _OVERRIDE
    spec: ModelSpec
    desired_version: str | None
    reason: str = ""
    user: str = ""
    request_id: str = ""
    requested_at: str = ""

    @classmethod
    def of(cls, o: Override) -> OverrideSet:
        return cls(o.spec, o.desired_version, o.reason, o.user, o.request_id, o.requested_at)

    def to_override(self, model: str, seq: int, set_at: str) -> Override:
        return Override(
            model, self.spec, self.desired_version, self.reason, self.user, self.request_id,
            self.requested_at, seq, set_at,
        )  # fmt: skip

    def to_detail(self) -> dict[str, Any]:
        return self._detail(
            action="set",
            spec=spec_to_record(self.spec),
            spec_schema=SPEC_SCHEMA,
            desired_version=self.desired_version,
            reason=self.reason,
            user=self.user,
            request_id=self.request_id,
            requested_at=self.requested_at,
        )

    @classmethod
    def from_detail(cls, d: Mapping[str, Any]) -> OverrideSet:
        schema_of(d, cls.SCHEMA, "override")
        desired = d.get("desired_version")
        return cls(
            spec=spec_from_record(d.get("spec"), d.get(SPEC_SCHEMA_KEY, 0)),
            desired_version=None if desired is None else str(desired),
            reason=get(d, "reason", str, ""),
            user=get(d, "user", str, ""),
            request_id=get(d, "request_id", str, ""),
            requested_at=get(d, "requested_at", str, ""),
        )


@dataclass(frozen=True)
class OverrideCleared(Typed):
    """An override ended: by the operator (`request_id`, `reason`, `user`) or by desired state
    (`why` says how; no request)."""

    PHASE = Phase.DONE.value
    STEPS = _OVERRIDE
    why: str
    request_id: str | None = None
    set_seq: int | None = None  # the record that set it
    was_serving: str | None = None
    reason: str | None = None
    user: str | None = None

    def to_detail(self) -> dict[str, Any]:
        by = {k: v for k, v in (("reason", self.reason), ("user", self.user)) if v is not None}
        return self._detail(
            action="clear",
            why=self.why,
            request_id=self.request_id,
            set_seq=self.set_seq,
            was_serving=self.was_serving,
            **by,
        )

    @classmethod
    def from_detail(cls, d: Mapping[str, Any]) -> OverrideCleared:
        schema_of(d, cls.SCHEMA, "override clear")
        return cls(
            why=get(d, "why", str, ""),
            request_id=get(d, "request_id", str, None),
            set_seq=get(d, "set_seq", int, None),
            was_serving=get(d, "was_serving", str, None),
            reason=get(d, "reason", str, None),
            user=get(d, "user", str, None),
        )


@dataclass(frozen=True)
class OverrideRefused(Typed):
    """A rollback or cancel (or an unreadable request file: action "?") the daemon refused.
    `file_kind`: what the entry was when it was refused unread ("fifo", "symlink", "directory",
    "device", "socket", "oversized", "unreadable")."""

    PHASE = Phase.FAILED.value
    STEPS = _OVERRIDE
    action: str
    request_id: str
    message: str
    reason: str | None = None
    user: str | None = None
    to: str | None = None
    file_kind: str | None = None

    def to_detail(self) -> dict[str, Any]:
        body: dict[str, Any] = {"action": self.action, "request_id": self.request_id}
        if self.reason is not None or self.user is not None:  # the request could be read
            body.update(reason=self.reason, user=self.user, to=self.to)
        if self.file_kind is not None:
            body["file_kind"] = self.file_kind
        return self._detail(message=self.message, **body)

    @classmethod
    def from_detail(cls, d: Mapping[str, Any]) -> OverrideRefused:
        schema_of(d, cls.SCHEMA, "refusal")
        return cls(
            action=get(d, "action", str, ""),
            request_id=get(d, "request_id", str, ""),
            message=get(d, "message", str),
            reason=get(d, "reason", str, None),
            user=get(d, "user", str, None),
            to=get(d, "to", str, None),
            file_kind=get(d, "file_kind", str, None),
        )


@dataclass(frozen=True)
class RetryRequested(Typed):
    """`hotswap retry`: the quarantine of `cleared_digest` (None: nothing was quarantined) ended."""

    PHASE = Phase.DONE.value
    STEPS = frozenset({Event.RETRY.value})
    request_id: str
    reason: str = ""
    user: str = ""
    requested_at: str = ""
    cleared_digest: str | None = None
    previous_error: str | None = None
    overridden: bool = False  # an override was in force: desired is tried when it ends

    def to_detail(self) -> dict[str, Any]:
        return self._detail(
            request_id=self.request_id,
            reason=self.reason,
            user=self.user,
            requested_at=self.requested_at,
            cleared_digest=self.cleared_digest,
            previous_error=self.previous_error,
            overridden=self.overridden,
        )

    @classmethod
    def from_detail(cls, d: Mapping[str, Any]) -> RetryRequested:
        schema_of(d, cls.SCHEMA, "retry")
        return cls(
            request_id=get(d, "request_id", str),
            reason=get(d, "reason", str, ""),
            user=get(d, "user", str, ""),
            requested_at=get(d, "requested_at", str, ""),
            cleared_digest=get(d, "cleared_digest", str, None),
            previous_error=get(d, "previous_error", str, None),
            overridden=get(d, "overridden", bool, False),
        )
