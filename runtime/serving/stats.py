"""Triton's statistics extension: per model version, counted in the data plane for every protocol.

`InferencePath.run` records each request once it is answered (HTTP and gRPC alike); the HTTP
route (`runtime.serving.extensions`) and the gRPC `ModelStatistics` method render the same
`statistics` dict, in the shape Triton documents for `GET /v2/models[/{m}[/versions/{v}]]/stats`
(`model_stats`: name, version, last_inference, inference_count, execution_count,
inference_stats {success, fail, queue, compute_input, compute_infer, compute_output, cache_hit,
cache_miss} each {count, ns}, batch_stats), which `ModelStatisticsResponse` parses field for field.

Semantics as Triton's: `inference_count` counts inferences (a batch of 8 is 8), `execution_count`
model executions (one per batch: dynamic batching stacks several requests into one); `success`
and `fail` time whole requests, from arrival; the queue (including the wait to be batched) and
compute durations count successful requests only. Counts live as long as the process, like Triton's, and are kept for every version that
served since it started (a swapped-out version's figures stay readable).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from runtime.serving.slot import Repository

R = TypeVar("R")
PHASES = ("queue", "compute_input", "compute_infer", "compute_output")


@dataclass
class Timings:
    """Seconds one request spent in each phase."""

    queue: float = 0.0
    compute_input: float = 0.0
    compute_infer: float = 0.0
    compute_output: float = 0.0

    def time(self, phase: str, work: Callable[[], R]) -> R:
        started = time.perf_counter()
        try:
            return work()
        finally:
            setattr(self, phase, getattr(self, phase) + time.perf_counter() - started)


@dataclass
class _Duration:
    count: int = 0
    ns: int = 0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.ns += int(seconds * 1e9)

    def to_json(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


def _phases() -> dict[str, _Duration]:
    return {p: _Duration() for p in PHASES}


@dataclass
class _VersionStats:
    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: _Duration = field(default_factory=_Duration)
    fail: _Duration = field(default_factory=_Duration)
    phases: dict[str, _Duration] = field(default_factory=_phases)
    batches: dict[int, dict[str, _Duration]] = field(default_factory=dict)

    def to_json(self, name: str, version: str) -> dict[str, Any]:
        stats = {
            "success": self.success.to_json(),
            "fail": self.fail.to_json(),
            **{p: d.to_json() for p, d in self.phases.items()},
            "cache_hit": _Duration().to_json(),  # no response cache here
            "cache_miss": _Duration().to_json(),
        }
        batch_stats = [
            {"batch_size": size, **{p: d.to_json() for p, d in phases.items()}}
            for size, phases in sorted(self.batches.items())
        ]
        return {
            "name": name,
            "version": version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": stats,
            "batch_stats": batch_stats,
        }


class InferenceStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_version: dict[tuple[str, str], _VersionStats] = {}

    def record(
        self,
        model: str,
        version: str,
        ok: bool,
        rows: int,
        timings: Timings,
        total: float,
        execution: int | None,
    ) -> None:
        """One answered request of `rows` inferences; `total` seconds from its arrival.
        `execution` is the batch size of the model execution this request ran (its own rows
        unbatched), None when it rode in a batch another request ran: Triton counts
        `execution_count` and `batch_stats` per execution, everything else per request."""
        with self._lock:
            stats = self._by_version.setdefault((model, version), _VersionStats())
            if not ok:
                stats.fail.add(total)
                return
            stats.last_inference_ms = int(time.time() * 1000)
            stats.inference_count += rows
            stats.success.add(total)
            for phase in PHASES:
                stats.phases[phase].add(getattr(timings, phase))
            if execution is None:
                return
            stats.execution_count += 1
            batch = stats.batches.setdefault(execution, {p: _Duration() for p in PHASES[1:]})
            for phase in PHASES[1:]:
                batch[phase].add(getattr(timings, phase))

    def model_stats(self, model: str, version: str) -> dict[str, Any]:
        with self._lock:
            stats = self._by_version.get((model, version), _VersionStats())
            return stats.to_json(model, version)

    def versions(self, model: str) -> list[str]:
        with self._lock:
            return sorted(v for m, v in self._by_version if m == model)

    def models(self) -> list[str]:
        with self._lock:
            return sorted({m for m, _ in self._by_version})


def statistics(
    repo: Repository, stats: InferenceStats, model: str | None, version: str | None
) -> dict[str, Any]:
    """Triton's statistics response for every model, one model, or one version of it: the
    versions that served since start and the one active now (at zero until it serves).
    Raises LookupError (the message says what) for a model or version with nothing to show."""
    names = [model] if model else sorted(set(repo.names()) | set(stats.models()))
    entries = []
    for name in names:
        versions = set(stats.versions(name))
        slot = repo.get(name)
        if slot is not None and slot.active is not None:
            versions.add(slot.active.version)
        if model and slot is None and not versions:
            raise LookupError(f"unknown model {name!r}")
        if version:
            if version not in versions:
                raise LookupError(f"model {name!r} has no statistics for version {version!r}")
            versions = {version}
        entries += [stats.model_stats(name, v) for v in sorted(versions)]
    return {"model_stats": entries}
