"""A long step's progress as `status.json` carries it (`models.<name>.progress`), typed and
versioned like the journal's records.

Written by the daemon's status writer from `reconciler.ops.progress`; read by `hotswap status`
(and `--watch`) in another process, possibly of another release. So the record only ever gains
fields, each with a default: a reader ignores keys it does not know and fills the ones an older
daemon did not write, and a record whose schema is newer than this release knows is still read
for the fields it shares. Nothing here is durable beyond the snapshot it is in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

PROGRESS_SCHEMA = 1
# status.json's own format: absent (1) before it carried progress records; 2 since
STATUS_FORMAT = 2

STEPS = ("fetch", "verify", "build", "warm")  # the long steps; others are not tracked


@dataclass(frozen=True)
class StepProgressRecord:
    step: str  # fetch | verify | build | warm
    elapsed_s: float = 0.0  # since the step started, as of the snapshot's `updated`
    done: int | None = None  # bytes (fetch), builder steps (build), runs (warm)
    total: int | None = None  # None: not known (a server that sends no length, a phase)
    unit: str = ""  # bytes | steps | runs
    phase: str | None = None  # e.g. the TensorRT builder's phase, "onnx check"
    rate: float | None = None  # units per second, smoothed
    eta_s: float | None = None  # seconds left at that rate, when the total is known
    schema: int = PROGRESS_SCHEMA

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> StepProgressRecord | None:
        """The record in `data`, or None when it is not one (absent, damaged)."""
        if not isinstance(data, dict) or not isinstance(data.get("step"), str):
            return None
        try:
            return cls(
                step=data["step"],
                elapsed_s=float(data.get("elapsed_s") or 0.0),
                done=_int(data.get("done")),
                total=_int(data.get("total")),
                unit=str(data.get("unit") or ""),
                phase=str(data["phase"]) if data.get("phase") is not None else None,
                rate=_float(data.get("rate")),
                eta_s=_float(data.get("eta_s")),
                schema=int(data.get("schema") or PROGRESS_SCHEMA),
            )
        except (TypeError, ValueError):
            return None

    @property
    def fraction(self) -> float | None:
        if self.done is None or not self.total:
            return None
        return min(1.0, self.done / self.total)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
