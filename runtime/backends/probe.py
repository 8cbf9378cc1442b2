"""A new model's first inferences, run in a child process with a time and a memory limit.

A signed model that passes every static check can still hang at its first run (a Loop with an
enormous trip count) or allocate tens of GB (ConstantOfShape of a shape computed from the input).
The control plane therefore runs a new ONNX Runtime artifact here first, in
`runtime.backends.probe_child`, and loads it into the serving process only once the child has
run it: whatever the model does, it does to the child.

Shaped like the TensorRT build's child (`runtime.backends.tensorrt.child`): a fresh interpreter
(not a fork of a process holding threads), a deadline after which it is killed, and its end
turned into an outcome with a reason: `probe-timeout`, `probe-memory` (the child's allocation
was refused under its address-space limit), `probe-crashed` (it died: a signal, the kernel's
OOM killer), `probe-failed` (the inference raised), `load-failed`, or `probe-abandoned` when
`abandon()` was called from another thread (desired state moved on, the daemon is stopping).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends.base import BackendError

POLL_S = 0.02
_KINDS = {"memory": "probe-memory", "infer": "probe-failed", "load": "load-failed"}
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding `runtime/`


@dataclass(frozen=True)
class ProbeLimits:
    timeout_s: float  # wall clock for the whole child: start, load and every run
    memory_bytes: int  # address space the model may map beyond the interpreter's own


@dataclass(frozen=True)
class ProbeResult:
    took_s: float  # the child's whole life, start-up included: what the probe adds to a swap
    load_ms: float
    run_ms: tuple[float, ...]
    peak_rss_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "took_s": round(self.took_s, 3),
            "load_ms": self.load_ms,
            "run_ms": list(self.run_ms),
            "peak_rss_bytes": self.peak_rss_bytes,
        }


class Probe:
    """One probe of one artifact; `run` returns once the child ran it, or raises BackendError.
    `abandon` may be called from any thread, before or during `run`."""

    def __init__(
        self,
        artifact: Path,
        feeds: dict[str, np.ndarray],
        limits: ProbeLimits,
        *,
        threads: int | None = None,
        runs: int = 1,
    ) -> None:
        self._artifact = artifact
        self._feeds = feeds
        self._limits = limits
        self._request = {
            "artifact": str(artifact),
            "threads": threads,
            "runs": runs,
            "memory_bytes": limits.memory_bytes,
            "parent": os.getpid(),
            "deadline_s": limits.timeout_s + 10,  # the child's own, should the daemon be gone
        }
        self._abandoned = threading.Event()
        self._why = ""

    def abandon(self, why: str) -> None:
        self._why = why
        self._abandoned.set()

    def run(self) -> ProbeResult:
        with tempfile.TemporaryDirectory(prefix="hotswap-probe-") as tmp:
            work = Path(tmp)  # scratch only the child reads and writes: nothing here outlives it
            (work / "request.json").write_text(json.dumps(self._request))
            np.savez(work / "feeds.npz", **self._feeds)  # type: ignore[arg-type]  # names only
            started = time.monotonic()
            code, killed_for = self._run_child(work)
            took = time.monotonic() - started
            return self._outcome(work, code, killed_for, took)

    def _run_child(self, work: Path) -> tuple[int, str | None]:
        """The child's exit status, and why it was killed (None when it ended by itself)."""
        path = os.pathsep.join(p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)
        # glibc reserves 64 MiB of address space per malloc arena, up to 8 per core: under an
        # address-space limit that would count against the model on a many-core device.
        env = {**os.environ, "PYTHONPATH": path, "MALLOC_ARENA_MAX": "2"}
        with (work / "stderr.log").open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "runtime.backends.probe_child", str(work)],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env,
                start_new_session=True,  # a Ctrl-C at the daemon's terminal is the daemon's
            )  # fmt: skip
            deadline = time.monotonic() + self._limits.timeout_s
            killed_for: str | None = None
            while proc.poll() is None and killed_for is None:
                if self._abandoned.wait(POLL_S):
                    killed_for = "abandoned"
                elif time.monotonic() >= deadline:
                    killed_for = "timeout"
            if killed_for is not None:
                proc.kill()
            return proc.wait(), killed_for

    def _outcome(self, work: Path, code: int, killed_for: str | None, took: float) -> ProbeResult:
        if killed_for == "abandoned":
            raise BackendError(f"the probe was abandoned: {self._why}", reason="probe-abandoned")
        if killed_for == "timeout":
            raise BackendError(
                f"the model's first inference did not finish within {self._limits.timeout_s:g} s;"
                " the probe process was killed",
                reason="probe-timeout",
            )
        result = _read_result(work / "result.json")
        if result is None or code != 0:
            how = f"killed by {_signal_name(-code)}" if code < 0 else f"exit status {code}"
            hint = " (possibly the kernel's OOM killer)" if code == -signal.SIGKILL else ""
            raise BackendError(
                f"the probe process died at the model's first inference ({how}{hint});"
                f" the serving process is unaffected{_tail(work / 'stderr.log')}",
                reason="probe-crashed",
            )
        if not result.get("ok"):
            kind = str(result.get("kind"))
            what = {
                "memory": "the model's first inference needed more memory than the probe's"
                f" limit of {self._limits.memory_bytes / 2**30:.2f} GiB",
                "load": "the probe could not load the model",
            }.get(kind, "the model's first inference failed")
            raise BackendError(
                f"{what}: {result.get('error')}", reason=_KINDS.get(kind, "probe-failed")
            )
        return ProbeResult(
            took_s=took,
            load_ms=float(result["load_ms"]),
            run_ms=tuple(float(t) for t in result["run_ms"]),
            peak_rss_bytes=int(result["peak_rss_bytes"]),
        )


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _tail(path: Path, limit: int = 400) -> str:
    try:
        text = path.read_bytes()[-limit:].decode(errors="replace").strip()
    except OSError:
        return ""
    return f": {text}" if text else ""
