"""Typed records of a candidate's first runs: the warm step's `done`, with what its probe found.

A new model is probed (its first inferences in a child process, `reconciler.ops.probe`) once
per deployment: `WarmDone.probe` says so in the journal, so a restart, a reload or an operator's
rollback to a version already probed loads it without another probe. Read back only through
`reconciler.state.queries` (`probed`); written by `reconciler.ops.instances`. 0.1.0 wrote a
plain detail (`iterations`, `memory`, `sequential`): read as a warm without a probe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.core.names import Phase, StepName
from reconciler.state.detail import Typed, get, schema_of


@dataclass(frozen=True)
class WarmDone(Typed):
    PHASE = Phase.DONE.value
    STEPS = frozenset({StepName.WARM.value})
    iterations: int
    memory: int | None = None  # bytes the instance is counted for (reconciler.ops.memory)
    sequential: bool = False  # the active version was unloaded first to make room
    build_key: str | None = None
    # What the probe found ({"took_s", "load_ms", "run_ms", "peak_rss_bytes", "limits"}), or
    # {"passed_at_seq": n} when an earlier probe of this deployment is trusted; None: not probed
    # (a backend the probe does not run, or probing turned off).
    probe: Mapping[str, Any] | None = None

    def to_detail(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"sequential": True} if self.sequential else {}
        if self.build_key is not None:
            extra["build_key"] = self.build_key
        if self.probe is not None:
            extra["probe"] = dict(self.probe)
        return self._detail(iterations=self.iterations, memory=self.memory, **extra)

    @classmethod
    def from_detail(cls, d: Mapping[str, Any]) -> WarmDone:
        schema_of(d, cls.SCHEMA, "warm")
        probe = d.get("probe")
        return cls(
            iterations=get(d, "iterations", int, 0),
            memory=get(d, "memory", int, None),
            sequential=get(d, "sequential", bool, False),
            build_key=get(d, "build_key", str, None),
            probe=probe if isinstance(probe, Mapping) else None,
        )
