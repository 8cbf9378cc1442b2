"""Heavy control-plane work runs on niced threads; the caller's thread keeps its priority."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from reconciler.ops.background import HEAVY_NICE, Background


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_heavy_work_runs_niced_and_the_caller_does_not() -> None:
    bg = Background()
    try:
        before = _nice()
        assert bg.run(_nice) == max(before, HEAVY_NICE)
        assert _nice() == before
    finally:
        bg.shutdown()


def test_nested_heavy_work_runs_in_place_instead_of_waiting_on_a_full_pool() -> None:
    bg = Background(workers=1)
    try:
        # with one worker, a nested submit would wait on itself forever
        outer, inner = bg.run(
            lambda: (
                threading.current_thread().name,
                bg.run(lambda: threading.current_thread().name),
            )
        )
        assert outer == inner
    finally:
        bg.shutdown()


def test_errors_reach_the_caller_unchanged() -> None:
    bg = Background()

    def fail() -> None:
        raise ValueError("bad model")

    try:
        with pytest.raises(ValueError, match="bad model"):
            bg.run(fail)
    finally:
        bg.shutdown()
