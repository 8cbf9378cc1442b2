"""A new deployment's first inferences, contained: run in a child process before it is loaded.

`Instances.warm` asks `probe` before it makes room or loads anything: the artifact is run in a
child (`runtime.backends.probe`) on the very inputs warm-up and the health check will use, under
a wall-clock and an address-space limit. A candidate that hangs, takes too much memory or
crashes there fails its warm step with `probe-timeout`, `probe-memory` or `probe-crashed` and
is quarantined; the serving process never ran it. Only ONNX Runtime artifacts are probed: a
TensorRT engine is built in a child already, and an engine that dies at its first run in the
serving process is caught by the crash-loop count (`reconciler.loop.crashloop`).

Once per deployment (desired digest and build key): the warm's journal record says the probe
passed (`WarmDone.probe`), so restarts, reloads and rollbacks to a version already probed do
not pay for it again. A probe in flight is abandoned (its child killed) when desired state no
longer wants that deployment, and when the daemon stops: a stuck candidate never holds up the
next version, nor a shutdown.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from reconciler.core.desired import ModelSpec
from reconciler.core.errors import RuntimeFailure, TransientError
from reconciler.core.reasons import STOPPING, SUPERSEDED
from reconciler.state import queries
from reconciler.state.journal import Journal
from reconciler.verify.health import Tensor, load_golden, sample_inputs
from runtime.backends import BackendError
from runtime.backends.base import V2_TO_NUMPY
from runtime.backends.probe import Probe, ProbeLimits

log = structlog.get_logger("hotswap.probe")

PROBED_BACKENDS = frozenset({"onnxruntime"})
DEFAULT_TIMEOUT_S = 60.0
# Address space a model may map in the probe beyond the interpreter's own: this floor, plus
# room for its weights (the artifact, a few times over: arena, prepacked copies) and for
# activations (a multiple of its largest allowed input, `shapes.max`).
MEMORY_FLOOR = 1 << 30
WEIGHTS_FACTOR = 4
ACTIVATIONS_FACTOR = 64


@dataclass(frozen=True)
class ProbeSettings:
    """`--probe-timeout`, `--probe-memory` (None: from the model), `--no-probe`."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    memory_bytes: int | None = None
    enabled: bool = True


def largest_input_bytes(spec: ModelSpec, inputs: Sequence[Tensor]) -> int:
    """Bytes of the model's inputs at `shapes.max` (dynamic dims without a range count 1)."""
    total = 0
    for t in inputs:
        ranged = spec.shape_range(t.name)
        shape = ranged.max if ranged else tuple(d if d > 0 else 1 for d in t.shape)
        total += math.prod(shape) * V2_TO_NUMPY.get(t.datatype, V2_TO_NUMPY["FP64"]).itemsize
    return total


def default_memory(artifact_bytes: int, input_bytes: int) -> int:
    return MEMORY_FLOOR + WEIGHTS_FACTOR * artifact_bytes + ACTIVATIONS_FACTOR * input_bytes


class Prober:
    def __init__(self, journal: Journal, settings: ProbeSettings | None = None) -> None:
        self.journal = journal
        self.settings = settings or ProbeSettings()
        self._lock = threading.Lock()
        self._running: dict[str, tuple[str, Probe]] = {}  # model -> (desired digest, probe)
        self._bounded: dict[int, Callable[[str], None]] = {}  # in-process runs: their cut-off
        self._stopping = False

    def limits_for(self, spec: ModelSpec, artifact: Path, inputs: Sequence[Tensor]) -> ProbeLimits:
        memory = self.settings.memory_bytes or default_memory(
            artifact.stat().st_size, largest_input_bytes(spec, inputs)
        )
        return ProbeLimits(self.settings.timeout_s, memory)

    def probe(
        self,
        spec: ModelSpec,
        key: str,
        artifact: Path,
        inputs: Sequence[Tensor],
        threads: int | None = None,
    ) -> dict[str, Any] | None:
        """What the probe found (for the warm's record), None when not probed; raises the
        failure (a `RuntimeFailure` that quarantines, or a `TransientError` when abandoned)."""
        if not self.settings.enabled or spec.backend not in PROBED_BACKENDS:
            return None
        passed = queries.probed(self.journal.records(spec.name), spec.name).get((spec.digest, key))
        if passed is not None:
            return {"passed_at_seq": passed}
        limits = self.limits_for(spec, artifact, inputs)
        feeds = sample_inputs(spec, inputs, load_golden(spec))
        probe = Probe(artifact, feeds, limits, threads=threads)
        self._track(spec, probe)
        try:
            result = probe.run()
        except BackendError as e:
            raise self._failure(spec, e) from e
        finally:
            with self._lock:
                self._running.pop(spec.name, None)
        log.info("probe.passed", model=spec.name, version=spec.version, **result.to_json())
        limits_json = {"timeout_s": limits.timeout_s, "memory_bytes": limits.memory_bytes}
        return {**result.to_json(), "limits": limits_json}

    def _track(self, spec: ModelSpec, probe: Probe) -> None:
        with self._lock:
            self._running[spec.name] = (spec.digest, probe)
            if self._stopping:
                probe.abandon("the daemon is stopping")

    def abandon_unwanted(self, wanted: Mapping[str, str]) -> list[str]:
        """Kill the probes of deployments desired state no longer asks for (`wanted`: model ->
        desired digest); the models whose probe was abandoned."""
        with self._lock:
            stale = [
                (model, probe)
                for model, (digest, probe) in self._running.items()
                if wanted.get(model) != digest
            ]
        for model, probe in stale:
            log.warning("probe.abandoned", model=model, why="desired state moved on")
            probe.abandon("desired state no longer asks for this version")
        return [model for model, _ in stale]

    def stop(self) -> None:
        """The daemon is stopping: kill every probe in flight, and any started from now on,
        and end the in-process runs of candidates being warmed or checked."""
        with self._lock:
            self._stopping = True
            running = [probe for _, probe in self._running.values()]
            cut_offs = list(self._bounded.values())
        for probe in running:
            probe.abandon("the daemon is stopping")
        for cut_off in cut_offs:
            cut_off(STOPPING)

    @contextlib.contextmanager
    def bounded(self, spec: ModelSpec, session: object, what: str) -> Iterator[None]:
        """A candidate's runs in the serving process (warm-up, health check) end within the
        probe's time limit: past it, or when the daemon stops, its session is terminated
        (ONNX Runtime's `RunOptions.terminate`) and the step fails. A session that cannot be
        terminated (another backend's) runs unbounded."""
        terminate = getattr(session, "terminate", None)
        if terminate is None or not self.settings.enabled:
            yield
            return
        why: list[str] = []  # set once, under the lock: why the runs were cut off
        state = {"done": False}

        def cut_off(reason: str) -> None:
            with self._lock:
                if state["done"] or why:
                    return
                why.append(reason)
            terminate()

        timer = threading.Timer(self.settings.timeout_s, cut_off, args=("warmup-timeout",))
        timer.daemon = True
        with self._lock:
            self._bounded[id(session)] = cut_off
        if self._stopping:
            cut_off(STOPPING)
        timer.start()
        try:
            try:
                yield
            finally:
                timer.cancel()
                with self._lock:
                    state["done"] = True
                    self._bounded.pop(id(session), None)
        except Exception as e:
            if why:
                raise self._cut_short(spec, what, why[0]) from e
            raise
        if why:  # cut off as the runs ended: the session is terminated for good
            raise self._cut_short(spec, what, why[0])

    def _cut_short(self, spec: ModelSpec, what: str, why: str) -> Exception:
        where = f"{what} {spec.name} v{spec.version}"
        if why == STOPPING:
            return TransientError(f"{where}: cut short, the daemon is stopping", reason=STOPPING)
        return RuntimeFailure(
            f"{where}: the runs in the serving process did not end within"
            f" {self.settings.timeout_s:g} s; they were terminated",
            reason=why,
        )

    def _failure(self, spec: ModelSpec, e: BackendError) -> Exception:
        where = f"warm {spec.name} v{spec.version}"
        if e.reason == "probe-abandoned":  # not a verdict on the model: tried again later
            reason = STOPPING if self._stopping else SUPERSEDED
            return TransientError(f"{where}: {e}", reason=reason)
        return RuntimeFailure(f"{where}: {e}", reason=e.reason)
