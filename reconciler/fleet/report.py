"""The state a device reports to its fleet: one JSON document, typed and versioned, built from the
daemon's status snapshot (`reconciler.state.status`).

The daemon's reporter (`reconciler.fleet.mqtt`) builds it after every transition and publishes
it retained on `<prefix>/devices/<id>/state`; `hotswap fleet status` and `hotswap fleet rollout`
read it back (`DeviceState.from_json`). It is built from the snapshot rather than from the
controller's objects so a report says exactly what `hotswap status` says on the device, and so
this layer needs nothing from the loop. A reader accepts documents of a newer minor shape (unknown
fields are ignored) and refuses only another `apiVersion`; a field added within `hotswap/v1`
(`journal_head`) is optional, so a report from an older device still reads (as None).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

API_VERSION = "hotswap/v1"
KIND = "DeviceState"

# Per model: what the fleet commands count and gate on.
SERVING, ROLLING_OUT, PENDING, FAILED, REMOVING = (
    "serving", "rolling-out", "pending", "failed", "removing",
)  # fmt: skip
ONLINE, OFFLINE = "online", "offline"


class NotAReport(ValueError):
    """A message on a state topic that is not a device state this release can read."""


@dataclass(frozen=True)
class ModelReport:
    desired: str | None
    active: str | None
    standby: str | None
    candidate: str | None
    state: str
    last_error: str | None = None
    reason: str | None = None  # reason code of the last failure (reconciler.core.reasons)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelReport:
        def text(key: str) -> str | None:
            value = data.get(key)
            return None if value is None else str(value)

        return cls(
            text("desired"), text("active"), text("standby"), text("candidate"),
            str(data.get("state") or PENDING), text("last_error"), text("reason"),
        )  # fmt: skip


@dataclass(frozen=True)
class JournalHead:
    """The device's journal head when the report was built (`reconciler.state.journal_head`):
    two reports with the same seq and hash reflect the same history, and a head that goes back
    or changes its hash at a seq already reported means the journal lost or rewrote records."""

    seq: int
    hash: str
    time: str = ""  # the head record's

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash, "time": self.time}

    @classmethod
    def from_json(cls, data: Any) -> JournalHead | None:
        """None for a missing or malformed head: the rest of the report still reads."""
        if not isinstance(data, dict):
            return None
        seq, hash_ = data.get("seq"), data.get("hash")
        if isinstance(seq, bool) or not isinstance(seq, int) or not isinstance(hash_, str):
            return None
        return cls(seq, hash_, str(data.get("time") or ""))


@dataclass(frozen=True)
class DeviceState:
    device: str
    status: str  # ONLINE | OFFLINE (the last will)
    labels: dict[str, str] = field(default_factory=dict)
    hotswap_version: str = ""
    ready: bool = False
    desired_commit: str | None = None  # the commit the desired checkout was at
    models: dict[str, ModelReport] = field(default_factory=dict)
    updated: str | None = None  # when the daemon wrote the snapshot this was built from
    passes: int = 0
    journal_head: JournalHead | None = None  # None: no head yet, or an older device's report

    def to_json(self) -> dict[str, Any]:
        body = {"apiVersion": API_VERSION, "kind": KIND, **self.__dict__}
        body["models"] = {name: m.to_json() for name, m in sorted(self.models.items())}
        body["journal_head"] = None if self.journal_head is None else self.journal_head.to_json()
        return body

    @classmethod
    def from_json(cls, data: Any) -> DeviceState:
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise NotAReport("not a DeviceState document")
        if data.get("apiVersion") != API_VERSION:
            raise NotAReport(
                f"apiVersion {data.get('apiVersion')!r}, this release reads {API_VERSION}"
            )
        models, labels = _mapping(data.get("models")), _mapping(data.get("labels"))
        return cls(
            device=str(data.get("device", "")),
            status=OFFLINE if data.get("status") == OFFLINE else ONLINE,
            labels={str(k): str(v) for k, v in labels.items()},
            hotswap_version=str(data.get("hotswap_version", "")),
            ready=bool(data.get("ready")),
            desired_commit=data.get("desired_commit"),
            models={
                str(n): ModelReport.from_json(m) for n, m in models.items() if isinstance(m, dict)
            },
            updated=data.get("updated"),
            passes=int(data.get("passes") or 0),
            journal_head=JournalHead.from_json(data.get("journal_head")),
        )

    def comparable(self) -> dict[str, Any]:
        """The document less what changes on every write: a report is sent only when this differs."""
        body = self.to_json()
        body.pop("updated", None)
        body.pop("passes", None)
        return body


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _version(instance: Any) -> str | None:
    return (
        str(instance["version"]) if isinstance(instance, dict) and "version" in instance else None
    )


def model_state(entry: dict[str, Any]) -> str:
    """One model's state, from its entry in the status snapshot."""
    desired = entry.get("desired")
    if desired is None:
        return REMOVING
    if entry.get("failed_digest") and entry.get("failed_digest") == desired.get("digest"):
        return FAILED  # the desired version was quarantined: it will not be tried again as is
    if entry.get("candidate"):
        return ROLLING_OUT
    if _version(entry.get("active")) == str(desired.get("version")):
        return SERVING
    return PENDING


def model_report(entry: dict[str, Any]) -> ModelReport:
    desired = entry.get("desired") or {}
    failure = entry.get("last_failure") or {}
    return ModelReport(
        desired=None if desired.get("version") is None else str(desired["version"]),
        active=_version(entry.get("active")),
        standby=_version(entry.get("standby")),
        candidate=_version(entry.get("candidate")),
        state=model_state(entry),
        last_error=entry.get("last_error"),
        reason=failure.get("reason"),
    )


def from_snapshot(
    snapshot: dict[str, Any] | None,
    device: str,
    labels: dict[str, str],
    version: str,
    journal_head: dict[str, Any] | None = None,
) -> DeviceState:
    """The online report of a device whose status snapshot is `snapshot` (None: none written);
    `journal_head` as `reconciler.state.journal_head.head_report` gives it."""
    snap = snapshot or {}
    models = _mapping(snap.get("models"))
    return DeviceState(
        device=device,
        status=ONLINE,
        labels=dict(labels),
        hotswap_version=version,
        ready=bool(snap.get("ready")),
        desired_commit=snap.get("revision"),
        models={name: model_report(m) for name, m in models.items() if isinstance(m, dict)},
        updated=snap.get("updated"),
        passes=int(snap.get("passes") or 0),
        journal_head=JournalHead.from_json(journal_head),
    )


def offline(device: str, labels: dict[str, str], version: str) -> DeviceState:
    """The last will: what the broker publishes for a device that vanished without a goodbye."""
    return DeviceState(device=device, status=OFFLINE, labels=dict(labels), hotswap_version=version)
