"""A backend that runs no ONNX, for the in-process harness: fast, and told how to misbehave.

It implements `runtime.backends.base.Backend`: `build` copies the verified ONNX to the artifact
path (so the build cache, its sha256 check and damage to it behave as with a real backend),
`load` gives a session whose `infer` returns `2 * x` for every output, the same function the
tiny models in `tests/support/tiny_models.py` compute. `faults` arms one misbehaviour per call
kind ("build", "load", "infer"), consumed in order, so a test says "the first load raises
ZeroDivisionError" and the second succeeds.
"""

from __future__ import annotations

import shutil
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends.base import BackendError, BuildOptions, TensorInfo

Fault = Callable[[], Any]  # raises, or returns a value that replaces the normal result


class FakeSession:
    def __init__(self, backend: FakeBackend, inputs: tuple[TensorInfo, ...]) -> None:
        self._backend = backend
        self.inputs = inputs
        self.outputs = (TensorInfo("y", "FP32", (-1, 4)),)
        self.released = False

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._backend.calls.append("infer")
        fault = self._backend.take("infer")
        if fault is not None:
            replaced = fault()
            if replaced is not None:
                return {"y": np.asarray(replaced, np.float32)}
        x = next(iter(feeds.values()))
        return {"y": (x * 2).astype(np.float32)}

    def release(self) -> None:
        self.released = True


class FakeBackend:
    name = "fake"

    def __init__(self, version: str = "1.0") -> None:
        self.version = version
        self.calls: list[str] = []
        self._faults: dict[str, deque[Fault]] = {}
        self._lock = threading.Lock()
        self.sessions: list[FakeSession] = []

    @property
    def cache_identity(self) -> str:
        return f"fake {self.version}"

    def arm(self, call: str, *faults: Fault) -> None:
        """The next calls of kind `call` run these, one each, before (or instead of) the work."""
        with self._lock:
            self._faults.setdefault(call, deque()).extend(faults)

    def take(self, call: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(call)
            return queue.popleft() if queue else None

    def build(self, model: Path, dest: Path, options: BuildOptions) -> None:
        self.calls.append("build")
        fault = self.take("build")
        if fault is not None:
            fault()
        shutil.copyfile(model, dest)

    def load(self, artifact: Path, threads: int | None = None) -> FakeSession:
        self.calls.append("load")
        fault = self.take("load")
        if fault is not None:
            fault()
        if not artifact.is_file():
            raise BackendError(f"{artifact}: no artifact", reason="load-failed")
        session = FakeSession(self, (TensorInfo("x", "FP32", (-1, 4)),))
        self.sessions.append(session)
        return session


def raises(exc: BaseException) -> Fault:
    def fault() -> Any:
        raise exc

    return fault


def returns(value: Any) -> Fault:
    return lambda: value
