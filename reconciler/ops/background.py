"""CPU-heavy control-plane work runs at a lower priority than serving; decisions do not.

Hashing, the ONNX checker, engine builds, warm-up and health-check inferences can keep a core
busy for seconds: they run on threads at nice 10, so they yield the CPU to requests being
served. The control loop's own threads stay at normal priority, because what they do next is
often urgent and tiny — journaling, judging a rollout stage, the pointer flip of a swap or a
revert: on a saturated device a niced thread waits for the inference threads, and an
operator's rollback would wait with it. (Linux cannot raise a thread's priority back once
lowered without CAP_SYS_NICE, so the heavy work gets threads of its own rather than a
temporary nice.)
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

HEAVY_NICE = 10
THREAD_PREFIX = "hotswap-heavy"

F = TypeVar("F", bound=Callable[..., Any])


def lower_priority() -> None:
    """On Linux a thread is a task with its own nice value: this lowers only the calling thread."""
    # Not Linux, or not allowed: run at normal priority.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HEAVY_NICE)


class Background:
    """A small pool of niced threads; `run` blocks the caller until the work is done."""

    def __init__(self, workers: int = 2) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=THREAD_PREFIX, initializer=lower_priority
        )

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name.startswith(THREAD_PREFIX):
            return fn(*args, **kwargs)  # already on a heavy thread (warm building its artifact)
        return self._pool.submit(fn, *args, **kwargs).result()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def heavy(method: F) -> F:
    """Run a method of an ops piece on that piece's `background` pool (at nice 10)."""

    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        return self.background.run(method, self, *args, **kwargs)

    return run  # type: ignore[return-value]
