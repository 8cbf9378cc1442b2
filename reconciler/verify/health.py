"""Warm-up and health check of a candidate instance before it may serve.

Inputs come from the golden file when there is one (its keys are the model's input and output
names), else are made from `runtime.shapes` opt (or 1 for dynamic dims). The latency budget is
judged on the median of the timed runs: the active version serves beside the candidate while
this runs, so a single slow run says more about the neighbour than about the candidate.
"""

from __future__ import annotations

import statistics
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from reconciler.core.desired import ModelSpec
from reconciler.core.errors import InvalidInput, RuntimeFailure
from runtime.backends.base import V2_TO_NUMPY, BackendError, Session

TIMED_RUNS = 5


@dataclass(frozen=True)
class HealthReport:
    median_ms: float
    max_abs_error: float | None
    runs: int

    def to_json(self) -> dict[str, Any]:
        return {
            "median_ms": round(self.median_ms, 3),
            "max_abs_error": self.max_abs_error,
            "runs": self.runs,
        }


def load_golden(spec: ModelSpec) -> dict[str, np.ndarray] | None:
    if not spec.health.golden:
        return None
    try:
        with np.load(spec.health.golden, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError as e:
        raise InvalidInput(
            f"{spec.file} spec.health.golden: {spec.health.golden} does not exist",
            reason="golden-missing",
        ) from e
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise InvalidInput(
            f"{spec.file} spec.health.golden: {spec.health.golden} is not a readable npz: {e}",
            reason="golden-invalid",
        ) from e


class Tensor(Protocol):
    """An input as a session (`TensorInfo`) or the verified model (`TensorSpec`) describes it."""

    @property
    def name(self) -> str: ...
    @property
    def datatype(self) -> str: ...
    @property
    def shape(self) -> tuple[int, ...]: ...


def sample_inputs(
    spec: ModelSpec, inputs: Sequence[Tensor], golden: dict[str, np.ndarray] | None
) -> dict[str, np.ndarray]:
    """The feeds of warm-up, health check and probe alike (seeded: the same on every call)."""
    feeds: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(0)
    for t in inputs:
        if golden is not None and t.name in golden:
            feeds[t.name] = golden[t.name]
            continue
        rng_spec = spec.shape_range(t.name)
        shape = rng_spec.opt if rng_spec else tuple(d if d > 0 else 1 for d in t.shape)
        dtype = V2_TO_NUMPY.get(t.datatype, np.dtype(np.float32))
        feeds[t.name] = (
            rng.standard_normal(shape).astype(dtype)
            if dtype.kind == "f"
            else np.zeros(shape, dtype)
        )
    return feeds


def _run(session: Session, feeds: dict[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    try:
        return session.infer(feeds)
    except BackendError as e:
        raise RuntimeFailure(f"{what}: inference failed: {e}", reason="health-infer-failed") from e


def warm_up(
    spec: ModelSpec, session: Session, progress: Callable[[int, int], None] | None = None
) -> None:
    """`progress(done, total)` after each run (a TensorRT engine's first runs can be slow)."""
    feeds = sample_inputs(spec, session.inputs, load_golden(spec))
    total = spec.health.warmup_iterations
    for done in range(total):
        _run(session, feeds, f"warm-up of {spec.name} v{spec.version}")
        if progress is not None:
            progress(done + 1, total)


def health_check(spec: ModelSpec, session: Session) -> HealthReport:
    what = f"health-check {spec.name} v{spec.version}"
    golden = load_golden(spec)
    feeds = sample_inputs(spec, session.inputs, golden)
    outputs = _run(session, feeds, what)
    for name, value in outputs.items():
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            raise RuntimeFailure(
                f"{what}: output {name!r} has {bad} NaN/Inf values", reason="health-nan"
            )
    max_err: float | None = None
    if golden is not None:
        compared = [n for n in outputs if n in golden]
        if not compared:
            raise RuntimeFailure(
                f"{what}: golden file has none of the outputs {sorted(outputs)}",
                reason="health-golden-mismatch",
            )
        max_err = 0.0
        for name in compared:
            got, want = outputs[name], golden[name]
            if got.shape != want.shape:
                raise RuntimeFailure(
                    f"{what}: output {name!r} has shape {list(got.shape)}, golden has {list(want.shape)}",
                    reason="health-golden-mismatch",
                )
            err = (
                float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
                if got.size
                else 0.0
            )
            max_err = max(max_err, err)
            if not np.allclose(got, want, atol=spec.health.atol, rtol=spec.health.rtol):
                raise RuntimeFailure(
                    f"{what}: output {name!r} differs from golden by up to {err:.3g} (atol {spec.health.atol:g})",
                    reason="health-golden-mismatch",
                )
    timings = []
    for _ in range(TIMED_RUNS):
        start = time.perf_counter()
        _run(session, feeds, what)
        timings.append((time.perf_counter() - start) * 1000)
    median_ms = statistics.median(timings)
    budget = spec.health.max_latency_ms
    if budget is not None and median_ms > budget:
        raise RuntimeFailure(
            f"{what}: median latency {median_ms:.1f} ms exceeds the budget of {budget:g} ms",
            reason="health-latency",
        )
    return HealthReport(median_ms, max_err, TIMED_RUNS + 1)
