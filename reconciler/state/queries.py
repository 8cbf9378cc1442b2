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
    WarmDone,
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


# -- contained first runs (reconciler.ops.probe, reconciler.loop.crashloop) ----------------------
def probed(records: Iterable[Record], model: str) -> dict[tuple[str, str], int]:
    """(desired digest, build key) of each deployment of `model` whose probe passed -> the seq
    of the warm that says so: what need not be probed again."""
    found: dict[tuple[str, str], int] = {}
    for entry in entries(r for r in records if r.model == model):
        body = entry.body
        if isinstance(body, WarmDone) and body.probe is not None and body.build_key:
            digest = entry.rec.desired_digest or ""
            found.setdefault((digest, body.build_key), entry.rec.seq)
    return found


# The steps that run the model's own code in the daemon: dying in one of them, boot after boot,
# is the model's doing. A kill in any other step (a fetch, a swap) says nothing about the model.
# The restore at startup runs the model too: a promoted version that kills the daemon as it is
# loaded again must not keep the device in a crash loop either.
RUNS_THE_MODEL = frozenset({
    StepName.BUILD.value, StepName.WARM.value, StepName.HEALTH_CHECK.value, StepName.RESTORE.value,
})  # fmt: skip


@dataclass(frozen=True)
class Interrupted:
    """A step of one deployment that boots in a row found begun and never ended."""

    model: str
    step: str
    digest: str
    boots: int
    last: Record  # the begin record of the latest interrupted attempt


def interrupted(records: Iterable[Record]) -> dict[tuple[str, str], Interrupted]:
    """Per (model, desired digest), its step in `RUNS_THE_MODEL` that was begun and never ended,
    and how many times in a row that happened: a begin followed by another of the same model
    (the daemon started again) or by the end of the journal.

    The count restarts when that step of that digest ends (done or failed), when the digest is
    promoted, or at an operator's `hotswap retry`. Called at startup, before anything is begun.
    """
    counts: dict[tuple[str, str], Interrupted] = {}
    open_begin: dict[str, Record] = {}
    for rec in records:
        if rec.phase == Phase.BEGIN:
            if rec.model in open_begin:
                _count(counts, open_begin[rec.model])
            open_begin[rec.model] = rec
            continue
        begun = open_begin.pop(rec.model, None)
        if begun is not None and begun.step != rec.step:
            open_begin[rec.model] = begun  # an event between a step's begin and its end
        if rec.phase == Phase.DONE and rec.step in (StepName.SWAP, Event.RETRY):
            for key in [k for k in counts if k[0] == rec.model]:
                if rec.step == Event.RETRY or key[1] == rec.desired_digest:
                    counts.pop(key)
        elif rec.step in RUNS_THE_MODEL and rec.desired_digest:
            held = counts.get((rec.model, rec.desired_digest))
            if held is not None and held.step == rec.step:
                counts.pop((rec.model, rec.desired_digest))
    for begun in open_begin.values():
        _count(counts, begun)
    return counts


def _count(counts: dict[tuple[str, str], Interrupted], begun: Record) -> None:
    if begun.step not in RUNS_THE_MODEL or not begun.desired_digest:
        return
    key = (begun.model, begun.desired_digest)
    before = counts.get(key)
    boots = before.boots + 1 if before is not None and before.step == begun.step else 1
    counts[key] = Interrupted(begun.model, begun.step, begun.desired_digest, boots, begun)
