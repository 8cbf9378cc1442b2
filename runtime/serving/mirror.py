"""Mirrored inference: run the other version on a request off the request path, and compare.

A shadow stage mirrors a share of requests to the candidate (the client is answered by the
active version and never waits for the mirror); a canary whose gates compare outputs runs the
active version on the requests it sent to the candidate. The mirror has its own small thread
pool and a bounded backlog: when the device is saturated, mirrors are dropped (and counted)
rather than queued, so shadowing can never slow down or pile up behind the traffic it observes.
It runs at normal priority so the candidate's latency is measured under the same conditions as
the active version's.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import structlog

from runtime.serving.slot import Instance, ModelSlot
from runtime.serving.traffic import Split, compare_outputs

log = structlog.get_logger("hotswap.mirror")

Tensors = dict[str, np.ndarray]


def finite(outputs: Tensors) -> bool:
    """No NaN/Inf in any floating output: the rule golden health checks apply, kept in traffic."""
    return all(np.isfinite(a).all() for a in outputs.values() if a.dtype.kind == "f")


class Mirror:
    def __init__(self, workers: int = 1, backlog: int | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hotswap-mirror")
        self._backlog = backlog if backlog is not None else 2 * workers
        self._pending = 0
        self._lock = threading.Lock()

    def offer(
        self,
        slot: ModelSlot,
        served_by: Instance,
        request_id: str | None,
        feeds: Tensors,
        outputs: Tensors,
    ) -> None:
        """Mirror this request if the slot's rollout stage wants it; never blocks."""
        if slot.split is None:  # the common case: no rollout, nothing to take a lock for
            return
        lease = slot.mirror_lease(served_by, request_id)
        if lease is None:
            return
        other, split = lease
        with self._lock:
            full = self._pending >= self._backlog
            if not full:
                self._pending += 1
        if full:
            split.record_dropped()
            slot.release_mirror(other)
            return
        shadow = split.mode == "shadow"  # the other is the candidate; else it is the active one
        self._pool.submit(self._run, slot, split, other, feeds, outputs, shadow)

    def _run(
        self,
        slot: ModelSlot,
        split: Split,
        other: Instance,
        feeds: Tensors,
        served: Tensors,
        shadow: bool,
    ) -> None:
        try:
            started = time.perf_counter()
            try:
                answer = other.session.infer(feeds)
            except Exception as e:  # a candidate failing on real traffic is what we look for
                if shadow:
                    split.record(True, False, time.perf_counter() - started)
                log.debug("mirror.failed", model=slot.name, version=other.version, error=str(e))
                return
            if shadow:
                split.record(True, finite(answer), time.perf_counter() - started)
            candidate, active = (answer, served) if shadow else (served, answer)
            split.record_comparison(*compare_outputs(candidate, active))
        finally:
            slot.release_mirror(other)
            with self._lock:
                self._pending -= 1

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
