"""The serving process's side of a build: spawn the child, relay its progress, enforce the
timeout, and turn the child's end into the backend's outcome.

Spawned, not forked: the serving process holds threads and possibly a CUDA context, neither of
which survives a fork. A crash, OOM or hang in the TensorRT builder kills only the child, and
the serving process reports `build-crashed` or `build-timeout`.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue as queue_mod
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime.backends.base import BackendError
from runtime.backends.tensorrt.build import _build_engine

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
Message = tuple[Any, ...]


class BuildChild:
    """One build in its own process; `run` returns once the artifact is written, or raises."""

    def __init__(
        self,
        model: Path,
        dest: Path,
        options: dict[str, Any],
        timing_cache: Path,
        *,
        trt_module: str,
        timeout_s: float,
        progress: Progress | None,
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._queue = ctx.Queue()
        self._proc = ctx.Process(
            target=_build_engine,
            args=(str(model), str(dest), options, str(timing_cache), self._queue, trt_module),
            name=f"hotswap-trt-build-{model.stem}",
            daemon=True,
        )
        self._model = model
        self._timeout_s = timeout_s
        self._progress = progress

    def run(self) -> None:
        deadline = time.monotonic() + self._timeout_s
        self._proc.start()
        try:
            result = self._wait(deadline)
            self._proc.join(max(1.0, deadline - time.monotonic()))
        finally:
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(10)
            self._queue.close()
            self._queue.join_thread()
        self._raise_unless_built(result)

    def _wait(self, deadline: float) -> Message | None:
        """Relay messages until the child's result arrives, it dies, or time runs out."""
        while True:
            try:
                wait = min(0.2, max(0.01, deadline - time.monotonic()))
                message = self._queue.get(timeout=wait)
            except queue_mod.Empty:
                if not self._proc.is_alive():
                    return self._drain()
                if time.monotonic() >= deadline:
                    raise BackendError(
                        f"TensorRT build of {self._model.name} took longer than"
                        f" {self._timeout_s:g} s; the builder was killed",
                        reason="build-timeout",
                    ) from None
                continue
            result = self._relay(message)
            if result is not None:
                return result

    def _drain(self) -> Message | None:
        """What the child put just before exiting, which may arrive after it is gone."""
        result = None
        with contextlib.suppress(queue_mod.Empty):
            while result is None:
                result = self._relay(self._queue.get(timeout=0.5))
        return result

    def _relay(self, message: Message) -> Message | None:
        """Pass progress and notes on; return the message if it is the child's result."""
        kind = message[0]
        if kind == "progress":
            _, phase, step, total = message
            if self._progress is not None:
                self._progress(str(phase), int(step), int(total))
            return None
        if kind == "note":
            log.warning("tensorrt build: %s", message[1])
            return None
        return message

    def _raise_unless_built(self, result: Message | None) -> None:
        if result is not None and result[0] == "error":
            raise BackendError(str(result[2]), reason=str(result[1]))
        code = self._proc.exitcode
        if result is None or code != 0:
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
            raise BackendError(
                f"the TensorRT builder process for {self._model.name} died ({how});"
                " the serving process is unaffected",
                reason="build-crashed",
            )
