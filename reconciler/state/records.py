"""Typed journal records: what the detail of every record that is read back holds, versioned.

Writers build one of these and hand it to `Journal.append` (which still takes a plain dict from
writers not migrated yet); readers never parse a detail themselves: `reconciler.state.queries`
reads rows back through `parse`, which gives each its type (operator requests' records are in
`reconciler.state.operator_records`). Each type says which steps and phase it is written under,
writes its detail with `to_detail()` (with a `"schema"` key) and reads back with `from_detail()`
its current schema and the shape 0.1.0 wrote (no `"schema"` key).

Compatibility (the journal module's docstring has the whole format): a key added with a default
does not bump a schema, and readers ignore keys they do not know; a schema is bumped only when
an older reader could no longer read the record right. A record whose schema is newer than this
release knows, or whose detail is damaged, is kept as `Raw`: shown as written, never fatal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.core.desired import ModelSpec
from reconciler.core.names import Event, Phase, StepName
from reconciler.core.reasons import REASONS, Next
from reconciler.state.detail import (
    PLAN_STEPS,
    SCHEMA_KEY,
    SPEC_SCHEMA,
    SPEC_SCHEMA_KEY,
    Newer,
    Raw,
    Typed,
    Unreadable,
    get,
    schema_of,
    spec_from_record,
    spec_to_record,
)
from reconciler.state.journal import Record
from reconciler.state.journal_records import (
    HeadRepaired,
    JournalReplaced,
    JournalUntrusted,
    journal_kind,
)
from reconciler.state.operator_records import (
    OverrideCleared,
    OverrideRefused,
    OverrideSet,
    RetryRequested,
)
from reconciler.state.probe_records import WarmDone
from reconciler.state.store_records import Refetched, StoreDamaged

__all__ = [
    "Body", "BuildDone", "Entry", "FetchDone", "HeadRepaired", "JournalReplaced",
    "JournalUntrusted", "OverrideCleared", "OverrideRefused",
    "OverrideSet", "Raw", "Refetched", "RestoreBegun", "RestoreDone", "RestoreFailed", "RetryRequested",
    "RevertBegun", "StepBegun", "StepFailed", "StoreDamaged", "SwapDone", "WarmDone", "parse",
]  # fmt: skip


# -- plan steps ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepBegun(Typed):
    """A plan step about to act (durable before it does): the plan's one line for it."""

    PHASE = Phase.BEGIN.value
    STEPS = PLAN_STEPS
    text: str

    def to_detail(self) -> dict[str, Any]:
        return self._detail(step=self.text)

    @classmethod
    def from_detail(cls, d: Mapping[str, Any]) -> StepBegun:
        schema_of(d, cls.SCHEMA, "step begin")
        return cls(get(d, "step", str))


@dataclass(frozen=True)
class RevertBegun(Typed):
    """A revert the executor starts because a step failed after the candidate was loaded."""

    PHASE = Phase.BEGIN.value
    STEPS = frozenset({StepName.REVERT.value})
    because: str  # the failed step's reason

    def to_detail(self) -> dict[str, Any]:
        return self._detail(because=self.because)

    @classmethod
    def from_detail(cls, d: Mapping[str, Any]) -> RevertBegun:
        schema_of(d, cls.SCHEMA, "revert begin")
        return cls(get(d, "because", str))


@dataclass(frozen=True)
class FetchDone(Typed):
    PHASE = Phase.DONE.value
    STEPS = frozenset({StepName.FETCH.value})
    blob: str  # sha256 of the bytes now in the store
    bytes: int

    def to_detail(self) -> dict[str, Any]:
        return self._detail(blob=self.blob, bytes=self.bytes)

    @classmethod
    def from_detail(cls, d: Mapping[str, Any]) -> FetchDone:
        schema_of(d, cls.SCHEMA, "fetch")
        return cls(get(d, "blob", str), get(d, "bytes", int, 0))


@dataclass(frozen=True)
class BuildDone(Typed):
    PHASE = Phase.DONE.value
    STEPS = frozenset({StepName.BUILD.value})
    build_key: str
    artifact: str  # its path when built (the cache may have moved since: use the key)
    bytes: int

    def to_detail(self) -> dict[str, Any]:
        return self._detail(build_key=self.build_key, artifact=self.artifact, bytes=self.bytes)

    @classmethod
    def from_detail(cls, d: Mapping[str, Any]) -> BuildDone:
        schema_of(d, cls.SCHEMA, "build")
        return cls(get(d, "build_key", str), get(d, "artifact", str, ""), get(d, "bytes", int, 0))


@dataclass(frozen=True)
class SwapDone(Typed):
    """A version made the served one: everything restoring it at the next start needs.

    `authorization` is the trust layer's `Authorization.to_json()` as it was when promoted (the
    state layer keeps it, the trust layer reads it): restore seeds it instead of asking the
    registry again. `sequential`: the active version was unloaded first (not enough memory for
    both), and the model answered nothing for `unavailable_ms`. `rollout_skipped`: why the
    canary or shadow stages were not run (nothing was serving to compare with).
    """

    PHASE = Phase.DONE.value
    STEPS = frozenset({StepName.SWAP.value})
    promoted: str
    previous: str | None
    build_key: str
    spec: ModelSpec
    authorization: Mapping[str, Any] | None = None
    sequential: bool = False
    unavailable_ms: float | None = None
    rollout_skipped: str | None = None

    def to_detail(self) -> dict[str, Any]:
        extra: dict[str, Any] = (
            {"sequential": True, "unavailable_ms": self.unavailable_ms} if self.sequential else {}
        )
        if self.rollout_skipped is not None:
            extra["rollout_skipped"] = self.rollout_skipped
        return self._detail(
            promoted=self.promoted,
            previous=self.previous,
            build_key=self.build_key,
            spec=spec_to_record(self.spec),
            spec_schema=SPEC_SCHEMA,
            authorization=None if self.authorization is None else dict(self.authorization),
            **extra,
        )

    @classmethod
    def from_detail(cls, d: Mapping[str, Any]) -> SwapDone:
        schema_of(d, cls.SCHEMA, "swap")
        spec = spec_from_record(d.get("spec"), d.get(SPEC_SCHEMA_KEY, 0))
        auth = d.get("authorization")
        return cls(
            promoted=get(d, "promoted", str, spec.version),
            previous=get(d, "previous", str, None),
            build_key=get(d, "build_key", str, ""),
            spec=spec,
            authorization=auth if isinstance(auth, Mapping) else None,
            sequential=get(d, "sequential", bool, False),
            unavailable_ms=get(d, "unavailable_ms", (int, float), None),
            rollout_skipped=get(d, "rollout_skipped", str, None),
        )


_FAILED_KEYS = frozenset({SCHEMA_KEY, "reason", "message", "terminal", "next", "traceback"})


@dataclass(frozen=True)
class StepFailed(Typed):
    """A step that failed (a restore too): `terminal` quarantines the desired digest; `next`
    says what the loop does about it (reconciler.core.reasons; absent in 0.1.0's records,
    which had only `terminal`). `figures` (a rollout gate's counts, ...) are written beside the
    named keys, as 0.1.0 did, so every key a failure ever wrote stays where readers look."""

    PHASE = Phase.FAILED.value
    STEPS = PLAN_STEPS | {StepName.RESTORE.value}
    reason: str
    message: str
    terminal: bool = False
    figures: Mapping[str, Any] = field(default_factory=dict)
    traceback: str | None = None
    next: str | None = None

    def to_detail(self) -> dict[str, Any]:
        clash = _FAILED_KEYS & set(self.figures)
        if clash:
            raise ValueError(f"failure figures may not be named {sorted(clash)}")
        body = {**self.figures, "reason": self.reason, "message": self.message}
        if self.traceback is not None:
            body["traceback"] = self.traceback
        if self.next is not None:
            body["next"] = self.next
        return self._detail(terminal=self.terminal, **body)

    @classmethod
    def from_detail(cls, d: Mapping[str, Any]) -> StepFailed:
        schema_of(d, cls.SCHEMA, "failure")
        reason = get(d, "reason", str, "")
        terminal = get(d, "terminal", bool, False)
        next_ = get(d, "next", str, None)
        if SCHEMA_KEY not in d and reason in REASONS:
            # 0.1.0 called every runtime failure terminal, damage to local copies included:
            # read it as today's table says, so an upgrade does not keep a version quarantined
            # for what is now repaired or retried.
            next_ = str(REASONS[reason].next)
            terminal = REASONS[reason].next is Next.QUARANTINE
        return cls(
            reason=reason,
            message=get(d, "message", str),
            terminal=terminal,
            figures={k: v for k, v in d.items() if k not in _FAILED_KEYS},
            traceback=get(d, "traceback", str, None),
            next=next_,
        )


# -- startup -------------------------------------------------------------------------------------
_RESTORE = frozenset({StepName.RESTORE.value})


@dataclass(frozen=True)
class RestoreBegun(Typed):
    PHASE = Phase.BEGIN.value
    STEPS = _RESTORE
    from_seq: int  # the swap record restored

    def to_detail(self) -> dict[str, Any]:
        return self._detail(from_seq=self.from_seq)

    @classmethod
    def from_detail(cls, d: Mapping[str, Any]) -> RestoreBegun:
        schema_of(d, cls.SCHEMA, "restore begin")
        return cls(get(d, "from_seq", int))


@dataclass(frozen=True)
class RestoreDone(Typed):
    PHASE = Phase.DONE.value
    STEPS = _RESTORE
    restored: str  # the version serving again
    build_key: str

    def to_detail(self) -> dict[str, Any]:
        return self._detail(restored=self.restored, build_key=self.build_key)

    @classmethod
    def from_detail(cls, d: Mapping[str, Any]) -> RestoreDone:
        schema_of(d, cls.SCHEMA, "restore")
        return cls(get(d, "restored", str), get(d, "build_key", str, ""))


@dataclass(frozen=True)
class RestoreFailed(Typed):
    PHASE = Phase.FAILED.value
    STEPS = _RESTORE
    message: str

    def to_detail(self) -> dict[str, Any]:
        return self._detail(message=self.message)

    @classmethod
    def from_detail(cls, d: Mapping[str, Any]) -> RestoreFailed:
        schema_of(d, cls.SCHEMA, "restore failure")
        return cls(get(d, "message", str))


# -- reading a row back ----------------------------------------------------------------------------
Body = (
    StepBegun | RevertBegun | FetchDone | BuildDone | SwapDone | StepFailed | RestoreBegun
    | RestoreDone | RestoreFailed | OverrideSet | OverrideCleared | OverrideRefused
    | RetryRequested | StoreDamaged | Refetched | WarmDone | JournalUntrusted | JournalReplaced
    | HeadRepaired | Raw
)  # fmt: skip

_BY_STEP_AND_PHASE: dict[tuple[str, str], Any] = {
    (StepName.FETCH.value, Phase.DONE.value): FetchDone,
    (StepName.BUILD.value, Phase.DONE.value): BuildDone,
    (StepName.SWAP.value, Phase.DONE.value): SwapDone,
    (StepName.WARM.value, Phase.DONE.value): WarmDone,
    (StepName.RESTORE.value, Phase.BEGIN.value): RestoreBegun,
    (StepName.RESTORE.value, Phase.DONE.value): RestoreDone,
    (StepName.RESTORE.value, Phase.FAILED.value): RestoreFailed,
    (Event.OVERRIDE.value, Phase.FAILED.value): OverrideRefused,
    (Event.RETRY.value, Phase.DONE.value): RetryRequested,
    (Event.STORE_DAMAGED.value, Phase.DONE.value): StoreDamaged,
    (Event.REFETCHED.value, Phase.DONE.value): Refetched,
}


def _kind(step: str, phase: str, detail: Mapping[str, Any]) -> Any:
    """The record type written under this step and phase, or None: a record kept raw."""
    if step == Event.OVERRIDE and phase == Phase.DONE:
        return {"set": OverrideSet, "clear": OverrideCleared}.get(str(detail.get("action")))
    if step in PLAN_STEPS and phase == Phase.BEGIN:
        return RevertBegun if "because" in detail else StepBegun
    if step in PLAN_STEPS and phase == Phase.FAILED:
        return StepFailed
    if step == StepName.RESTORE and phase == Phase.FAILED:
        return StepFailed if "reason" in detail else RestoreFailed  # 0.1.0 wrote a message only
    if step == Event.JOURNAL:
        return journal_kind(phase, detail)
    return _BY_STEP_AND_PHASE.get((step, phase))


def parse(rec: Record) -> Body:
    """The record's detail as its type; `Raw` (never an exception) for anything else."""
    detail = rec.details
    kind = _kind(rec.step, rec.phase, detail)
    if kind is None:
        return Raw(detail)
    try:
        body: Body = kind.from_detail(detail)
    except Newer as e:
        return Raw(detail, str(e))
    except (Unreadable, KeyError, TypeError, ValueError) as e:
        return Raw(detail, f"unreadable {rec.step} {rec.phase} record: {e}")
    return body


@dataclass(frozen=True)
class Entry:
    """One journal row and its detail read back: `rec` for the columns, `body` for the rest."""

    rec: Record
    body: Body

    @classmethod
    def of(cls, rec: Record) -> Entry:
        return cls(rec, parse(rec))
