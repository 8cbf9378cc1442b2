"""What the journal says: the one module that reads records back (all of them typed).

Callers hand in the rows (`Journal.records()`, or `records(model)` where one model is asked
about) and get values back: the startup restore (reconciler.loop.executor), the operator's side
(reconciler.operator.handler) and the CLI that follows a request (reconciler.cli.operator), and
retention. Every function is a pure replay of the rows in order, so they read a journal the
daemon is appending to (opened read-only) as well as one written by 0.1.0; none of them raises
on a record it cannot read (it is `Raw`, and skipped where a value was wanted).

Step and phase are columns, stable since 0.1.0, so what a record *is* (a promotion, an unload, a
failure) never depends on reading its detail; only what it *says* does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from reconciler.core.desired import ModelSpec
from reconciler.core.names import Event, Phase, StepName
from reconciler.core.override import Override
from reconciler.state.journal import Record
from reconciler.state.records import (
    BuildDone,
    Entry,
    FetchDone,
    OverrideCleared,
    OverrideSet,
    Raw,
    StepFailed,
    SwapDone,
)


def entries(records: Iterable[Record]) -> Iterator[Entry]:
    """Every row with its detail read back, in journal order."""
    for rec in records:
        yield Entry.of(rec)


def _is(rec: Record, step: str, phase: str) -> bool:
    return rec.step == step and rec.phase == phase


# -- what serves ---------------------------------------------------------------------------------
def last_promoted(records: Iterable[Record]) -> dict[str, Entry]:
    """Per model, its last promotion (swap done), unless an unload done came after it.

    The entry's body is the `SwapDone` that restore serves again, or `Raw` (with its problem)
    when the record cannot be read: restore then reports it and leaves the model to desired
    state, rather than serve an earlier promotion the journal says was replaced.
    """
    latest: dict[str, Entry] = {}
    for rec in records:
        if _is(rec, StepName.SWAP, Phase.DONE):
            latest[rec.model] = Entry.of(rec)
        elif _is(rec, StepName.UNLOAD, Phase.DONE):
            latest.pop(rec.model, None)
    return latest


def promotions(records: Iterable[Record], model: str) -> list[ModelSpec]:
    """Every spec `model` was swapped to, once each (by digest), the latest promotion last:
    what `hotswap rollback` chooses from."""
    specs: list[ModelSpec] = []
    for entry in entries(r for r in records if r.model == model):
        if isinstance(entry.body, SwapDone):
            spec = entry.body.spec
            specs = [s for s in specs if s.digest != spec.digest] + [spec]
    return specs


@dataclass
class History:
    """What one model's own history brought onto the device, for retention."""

    blobs: set[str] = field(default_factory=set)  # sha256 of every blob it fetched
    build_keys: set[str] = field(default_factory=set)  # every artifact it built
    promoted: list[tuple[str, str]] = field(
        default_factory=list
    )  # (sha256, build key), latest last


def history(records: Iterable[Record], model: str) -> History:
    found = History()
    for entry in entries(r for r in records if r.model == model):
        body = entry.body
        if isinstance(body, FetchDone):
            found.blobs.add(body.blob)
        elif isinstance(body, BuildDone):
            found.build_keys.add(body.build_key)
        elif isinstance(body, SwapDone):
            promoted = (body.spec.sha256, body.build_key)
            found.promoted = [p for p in found.promoted if p != promoted] + [promoted]
    return found


# -- quarantine ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Quarantine:
    """A desired digest that failed terminally: not tried again until desired state changes
    it, or an operator asks (`hotswap retry`)."""

    digest: str
    message: str
    seq: int  # the failure


def quarantined(records: Iterable[Record]) -> dict[str, Quarantine]:
    """Per model, the terminal failure still in force after the last record.

    A swap ends a model's quarantine (desired state moved on, or the failed version was fixed
    and promoted), except one made while an operator's override is in force: a rollback serves
    another version but does not forgive the one that failed, so cancelling the override does
    not retry it in a loop. An unload or a `hotswap retry` ends it too.
    """
    found: dict[str, Quarantine] = {}
    overridden: set[str] = set()
    for entry in entries(records):
        rec, body = entry.rec, entry.body
        if isinstance(body, OverrideSet):
            overridden.add(rec.model)
        elif isinstance(body, OverrideCleared):
            overridden.discard(rec.model)
        elif _is(rec, StepName.SWAP, Phase.DONE) and rec.model in overridden:
            continue
        elif rec.phase == Phase.DONE and rec.step in (StepName.SWAP, StepName.UNLOAD, Event.RETRY):
            found.pop(rec.model, None)
        elif isinstance(body, StepFailed) and body.terminal and rec.desired_digest:
            found[rec.model] = Quarantine(rec.desired_digest, body.message, rec.seq)
    return found


# -- an operator's requests ----------------------------------------------------------------------
def overrides(records: Iterable[Record]) -> dict[str, Override]:
    """The overrides in force after the last record (set, and not cleared since).

    A set record that cannot be read is skipped: only a damaged journal holds one (startup does
    not trust a journal whose chain is broken), or one from a later release.
    """
    current: dict[str, Override] = {}
    for entry in entries(records):
        rec, body = entry.rec, entry.body
        if isinstance(body, OverrideSet):
            current[rec.model] = body.to_override(rec.model, rec.seq, rec.time)
        elif isinstance(body, OverrideCleared):
            current.pop(rec.model, None)
    return current


def handled_requests(records: Iterable[Record]) -> set[str]:
    """The ids of every request the daemon has answered (so none is applied twice)."""
    return {
        request_id
        for rec in records
        if rec.step in (Event.OVERRIDE, Event.RETRY)
        and (request_id := rec.details.get("request_id"))
        and isinstance(request_id, str)
    }


def answer(records: Iterable[Record], request_id: str) -> Entry | None:
    """The daemon's record of this request (set, cleared, refused or retried), if written."""
    for rec in records:
        if (
            rec.step in (Event.OVERRIDE, Event.RETRY)
            and rec.details.get("request_id") == request_id
        ):
            return Entry.of(rec)
    return None


def after(records: Iterable[Record], seq: int) -> Iterator[Entry]:
    """The records written after `seq`."""
    return entries(r for r in records if r.seq > seq)


def message(entry: Entry) -> str:
    """What a failure (or a refusal, or any record) says went wrong; "" when nothing."""
    body = entry.body
    if isinstance(body, Raw):
        text = body.detail.get("message")
        return text if isinstance(text, str) else ""
    return str(getattr(body, "message", ""))


# -- status --------------------------------------------------------------------------------------
def last_per_model(records: Iterable[Record]) -> dict[str, Entry]:
    """Each model's last record: where it stands as far as the journal knows."""
    latest: dict[str, Record] = {}
    for rec in records:
        latest[rec.model] = rec
    return {model: Entry.of(rec) for model, rec in latest.items()}
