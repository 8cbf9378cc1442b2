"""Dynamic batching of one loaded version: concurrent requests stacked into one backend call.

Every `Instance` whose meta carries `batching` (the control plane copies desired state's
`runtime.batching` there) owns one `Batcher`, and `InferencePath._run_session` sends its
requests through it. A request is routed to an instance before it gets here
(`ModelSlot.acquire`), so it only ever joins a batch of that version: swaps and canary splits
mean exactly what they mean without batching.

The batcher has no thread of its own. The first request of a batch leads it: it waits up to
`max_queue_delay` for others (less once the batch is full or at its largest preferred size),
closes it, runs it on its own worker thread and hands each member its rows; the others wait
for that. So nothing can outlive the instance, and `close` (when the instance is released)
only refuses late arrivals. Requests join only a batch whose feeds have the same names, dtypes
and per-row shapes; one with more rows than `max_batch_size` runs alone. A failed batch fails
its members only, each with an error of its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime.backends.base import BackendError, Session

Tensors = dict[str, np.ndarray]
_Key = tuple[tuple[str, str, tuple[int, ...]], ...]


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int
    max_queue_delay_s: float = 0.002
    preferred_sizes: tuple[int, ...] = ()

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> BatchPolicy | None:
        """The policy in an instance's meta (`batching`), or None when batching is off."""
        batching = meta.get("batching")
        if not batching or int(batching.get("max_batch_size", 0)) < 2:
            return None
        return cls(
            max_batch_size=int(batching["max_batch_size"]),
            max_queue_delay_s=float(batching.get("max_queue_delay_s", 0.002)),
            preferred_sizes=tuple(int(n) for n in batching.get("preferred_sizes", ())),
        )

    @property
    def target(self) -> int:
        """Rows at which a batch goes without waiting out the delay."""
        fitting = [n for n in self.preferred_sizes if n <= self.max_batch_size]
        return max(fitting) if fitting else self.max_batch_size


def batchable(session: Session) -> bool:
    """Whether every input and output has a dynamic first dim (the batch dim)."""
    tensors = session.inputs + session.outputs
    return bool(tensors) and all(t.shape and t.shape[0] == -1 for t in tensors)


@dataclass
class BatchResult:
    """One request's share of a batch, and what its accounting needs."""

    outputs: Tensors
    queue_s: float  # from submission until its batch started to run
    compute_s: float  # the backend call of the whole batch
    batch_size: int  # rows in the batch
    leader: bool  # this request ran the batch: one execution per batch, counted once


@dataclass(eq=False)
class _Batch:
    opened: float
    members: list[Tensors] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    rows: int = 0
    closed: bool = False
    started: float = 0.0
    compute_s: float = 0.0
    outputs: list[Tensors] | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


def _rows(feeds: Tensors) -> int:
    first = next(iter(feeds.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim else 1


def _key(feeds: Tensors) -> _Key:
    return tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(feeds.items()))


class Batcher:
    def __init__(self, session: Session, policy: BatchPolicy) -> None:
        self.session = session
        self.policy = policy
        self._cond = threading.Condition()
        self._open: dict[_Key, _Batch] = {}
        self._closed = False

    def close(self) -> None:
        """Refuse new requests (the instance is being released; none are in flight)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def infer(self, feeds: Tensors) -> BatchResult:
        """`feeds`' outputs, computed in a batch with whatever else came within the delay.
        Raises BackendError when the batch failed."""
        arrived = time.perf_counter()
        rows = _rows(feeds)
        if rows >= self.policy.max_batch_size or not feeds:
            batch = _Batch(arrived, [feeds], [arrived], rows, closed=True)
            return self._lead(batch, 0)
        batch, index = self._join(feeds, rows, arrived)
        if index == 0:
            return self._lead(batch, 0)
        batch.done.wait()
        return self._share(batch, index, leader=False)

    def _join(self, feeds: Tensors, rows: int, arrived: float) -> tuple[_Batch, int]:
        """The batch this request is in and its place there; the leader (place 0) comes back
        once its batch is closed."""
        key = _key(feeds)
        with self._cond:
            if self._closed:
                raise BackendError("the instance was released", reason="released")
            batch = self._open.get(key)
            if batch is not None and batch.rows + rows > self.policy.max_batch_size:
                self._close(key, batch)
                batch = None
            if batch is None:
                batch = self._open[key] = _Batch(arrived)
            index = len(batch.members)
            batch.members.append(feeds)
            batch.arrivals.append(arrived)
            batch.rows += rows
            if batch.rows >= self.policy.target:
                self._close(key, batch)
            if index == 0:
                deadline = batch.opened + self.policy.max_queue_delay_s
                while not batch.closed:
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0 or self._closed:
                        self._close(key, batch)
                        break
                    self._cond.wait(remaining)
        return batch, index

    def _close(self, key: _Key, batch: _Batch) -> None:
        """Under the lock: no one joins `batch` from now on."""
        batch.closed = True
        if self._open.get(key) is batch:
            del self._open[key]
        self._cond.notify_all()

    def _lead(self, batch: _Batch, index: int) -> BatchResult:
        batch.started = time.perf_counter()
        try:
            batch.outputs = self._compute(batch)
        except BaseException as e:
            batch.error = e
        finally:
            batch.compute_s = time.perf_counter() - batch.started
            batch.done.set()
        return self._share(batch, index, leader=True)

    def _compute(self, batch: _Batch) -> list[Tensors]:
        if len(batch.members) == 1:
            return [self.session.infer(batch.members[0])]
        names = list(batch.members[0])
        stacked = {n: np.concatenate([m[n] for m in batch.members]) for n in names}
        outputs = self.session.infer(stacked)
        for name, value in outputs.items():
            if value.ndim == 0 or value.shape[0] != batch.rows:
                raise BackendError(
                    f"output {name!r} has {value.shape[0] if value.ndim else 0} rows for a"
                    f" batch of {batch.rows}: the model does not batch along its first dim"
                )
        shares, start = [], 0
        for member in batch.members:
            end = start + _rows(member)
            shares.append({n: v[start:end] for n, v in outputs.items()})
            start = end
        return shares

    def _share(self, batch: _Batch, index: int, leader: bool) -> BatchResult:
        error = batch.error
        if error is not None:
            if isinstance(error, BackendError):  # its own error object for each member
                raise BackendError(str(error), error.reason) from error
            raise BackendError(f"{type(error).__name__}: {error}") from error
        assert batch.outputs is not None
        return BatchResult(
            outputs=batch.outputs[index],
            queue_s=max(0.0, batch.started - batch.arrivals[index]),
            compute_s=batch.compute_s,
            batch_size=batch.rows,
            leader=leader,
        )
