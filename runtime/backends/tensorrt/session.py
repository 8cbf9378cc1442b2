"""Running a loaded engine: a pool of execution contexts, one per concurrent caller.

Each context ("worker") owns a CUDA stream and device buffers sized for the profile's max
shapes, so a request never waits on another's copies and never reallocates. Workers are made on
demand up to `max_contexts` (activation memory is per context) and reused; a released session
frees idle workers at once and busy ones as they come back.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.backends.base import V2_TO_NUMPY, BackendError, TensorInfo
from runtime.backends.tensorrt.compat import enum_name
from runtime.backends.tensorrt.cuda import DeviceMemory

# TensorRT DataType name -> KServe V2 datatype
_TRT_TO_V2 = {
    "FLOAT": "FP32",
    "HALF": "FP16",
    "INT8": "INT8",
    "INT32": "INT32",
    "INT64": "INT64",
    "BOOL": "BOOL",
    "UINT8": "UINT8",
}

Shape = tuple[int, ...]


@dataclass
class _Worker:
    context: Any
    stream: Any
    buffers: dict[str, tuple[int, int]]  # name -> (device pointer, capacity in bytes)


def _describe_io(trt: Any, engine: Any) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    ins: list[TensorInfo] = []
    outs: list[TensorInfo] = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        dtype = enum_name(engine.get_tensor_dtype(name))
        if dtype not in _TRT_TO_V2:
            raise BackendError(
                f"engine tensor {name!r} has type {dtype}, which the V2 API cannot carry",
                reason="load-failed",
            )
        info = TensorInfo(
            name, _TRT_TO_V2[dtype], tuple(int(d) for d in engine.get_tensor_shape(name))
        )
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            ins.append(info)
        else:
            outs.append(info)
    return tuple(ins), tuple(outs)


def _profile_ranges(engine: Any, inputs: tuple[TensorInfo, ...]) -> dict[str, tuple[Shape, Shape]]:
    """Input name -> (min shape, max shape) the engine accepts."""
    ranges: dict[str, tuple[Shape, Shape]] = {}
    for info in inputs:
        if any(d < 0 for d in info.shape):
            lo, _opt, hi = engine.get_tensor_profile_shape(info.name, 0)
            ranges[info.name] = (tuple(lo), tuple(hi))
        else:
            ranges[info.name] = (info.shape, info.shape)
    return ranges


class TensorRTSession:
    """One engine; a pool of execution contexts, one per concurrent caller, each with its own
    stream and device buffers sized for the profile's max shapes."""

    def __init__(
        self, trt: Any, engine: Any, memory: DeviceMemory, max_contexts: int, runtime: Any = None
    ) -> None:
        self._trt = trt
        self._runtime = runtime  # the engine must not outlive its runtime
        self._engine = engine
        self._memory = memory
        self._max_contexts = max(1, max_contexts)
        self.inputs, self.outputs = _describe_io(trt, engine)
        self._ranges = _profile_ranges(engine, self.inputs)
        self._lock = threading.Condition()
        self._free: list[_Worker] = []
        self._created = 0
        self._released = False

    def _new_worker(self) -> _Worker:
        context = self._engine.create_execution_context()
        if context is None:
            raise BackendError(
                "TensorRT could not create an execution context (out of GPU memory?)",
                reason="infer-failed",
            )
        for info in self.inputs:  # max shapes, so the outputs' max shapes can be read
            context.set_input_shape(info.name, self._ranges[info.name][1])
        stream = self._memory.create_stream()
        buffers: dict[str, tuple[int, int]] = {}
        try:
            for info in self.inputs + self.outputs:
                shape = tuple(int(d) for d in context.get_tensor_shape(info.name))
                if any(d < 0 for d in shape):
                    raise BackendError(
                        f"cannot size the buffer of {info.name!r}: shape {list(shape)} at the"
                        " max profile (data-dependent output shapes are not supported)",
                        reason="load-failed",
                    )
                nbytes = int(np.prod(shape, dtype=np.int64)) * V2_TO_NUMPY[info.datatype].itemsize
                ptr = self._memory.alloc(nbytes)
                buffers[info.name] = (ptr, nbytes)
                context.set_tensor_address(info.name, ptr)
        except BaseException:
            for ptr, _ in buffers.values():
                self._memory.free(ptr)
            self._memory.destroy_stream(stream)
            raise
        return _Worker(context, stream, buffers)

    def _acquire(self) -> _Worker:
        with self._lock:
            while True:
                if self._released:
                    raise BackendError("session was released", reason="infer-failed")
                if self._free:
                    return self._free.pop()
                if self._created < self._max_contexts:
                    self._created += 1
                    break
                self._lock.wait()
        try:
            return self._new_worker()
        except BaseException:
            with self._lock:
                self._created -= 1
                self._lock.notify()
            raise

    def _return(self, worker: _Worker) -> None:
        with self._lock:
            if self._released:
                self._free_worker(worker)
            else:
                self._free.append(worker)
            self._lock.notify()

    def _free_worker(self, worker: _Worker) -> None:
        for ptr, _ in worker.buffers.values():
            with contextlib.suppress(Exception):
                self._memory.free(ptr)
        with contextlib.suppress(Exception):
            self._memory.destroy_stream(worker.stream)
        worker.buffers.clear()
        worker.context = None

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        worker = self._acquire()
        try:
            return self._run(worker, feeds)
        finally:
            self._return(worker)

    def _run(self, worker: _Worker, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        memory, stream = self._memory, worker.stream
        hosts = self._stage_inputs(worker, feeds)  # alive until the stream is synchronised
        if not worker.context.execute_async_v3(memory.stream_handle(stream)):
            memory.synchronize(stream)
            raise BackendError("TensorRT execute_async_v3 failed", reason="infer-failed")
        results = self._fetch_outputs(worker)
        memory.synchronize(stream)
        del hosts
        return results

    def _stage_inputs(self, worker: _Worker, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Check each input against the profile, set its shape, queue its copy to the device."""
        hosts = []
        for info in self.inputs:
            if info.name not in feeds:
                raise BackendError(f"missing input {info.name!r}", reason="bad-shape")
            array = np.ascontiguousarray(feeds[info.name], dtype=V2_TO_NUMPY[info.datatype])
            lo, hi = self._ranges[info.name]
            if array.ndim != len(lo) or any(
                not a <= d <= b for a, d, b in zip(lo, array.shape, hi, strict=True)
            ):
                raise BackendError(
                    f"input {info.name!r} shape {list(array.shape)} is outside the engine's"
                    f" profile min {list(lo)} .. max {list(hi)}",
                    reason="bad-shape",
                )
            if worker.context.set_input_shape(info.name, array.shape) is False:
                raise BackendError(
                    f"TensorRT refused shape {list(array.shape)} for {info.name!r}",
                    reason="bad-shape",
                )
            self._memory.copy_htod(worker.buffers[info.name][0], array, worker.stream)
            hosts.append(array)
        return hosts

    def _fetch_outputs(self, worker: _Worker) -> dict[str, np.ndarray]:
        """Queue each output's copy back to the host (valid once the stream is synchronised)."""
        results: dict[str, np.ndarray] = {}
        for info in self.outputs:
            shape = tuple(int(d) for d in worker.context.get_tensor_shape(info.name))
            out = np.empty(shape, dtype=V2_TO_NUMPY[info.datatype])
            ptr, capacity = worker.buffers[info.name]
            if out.nbytes > capacity:
                raise BackendError(
                    f"output {info.name!r} shape {list(shape)} exceeds its buffer",
                    reason="infer-failed",
                )
            self._memory.copy_dtoh(out, ptr, worker.stream)
            results[info.name] = out
        return results

    def release(self) -> None:
        with self._lock:
            self._released = True
            workers, self._free = self._free, []
            self._lock.notify_all()
        for worker in workers:  # workers on loan are freed when they come back
            self._free_worker(worker)
        self._engine = None
        self._runtime = None
