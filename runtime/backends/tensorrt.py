"""TensorRT on NVIDIA GPUs: build a serialized engine from ONNX, run it with CUDA streams.

Optional: installed with `hotswap[tensorrt]` (tensorrt + cuda-python); nothing here imports
TensorRT or CUDA at module import time, so importing hotswap never requires them.

Build runs in a spawned child process with a timeout: a crash, OOM or hang in the TensorRT
builder kills only the child, and the serving process reports `build-crashed`/`build-timeout`.

Artifact format: `HSTRTENG` + 4-byte big-endian header length + JSON header + engine bytes. The
header carries the environment compatibility key (TensorRT version, CUDA runtime major, GPU name
and compute capability, OS/arch) and the engine's own sha256; `load` refuses an engine whose key
differs from this device's or whose bytes do not match, before TensorRT ever sees it.

API differences (DESIGN section 8): the EXPLICIT_BATCH creation flag only before TensorRT 10;
FP16/INT8 builder flags only where `trt.BuilderFlag` still has them (TensorRT 11 networks are
strongly typed: precision comes from the ONNX types, Q/DQ nodes for int8). int8 is accepted only
from an explicitly quantized (Q/DQ) ONNX; implicit calibrators are deprecated since 10.1 and
removed in 11, so none is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import multiprocessing
import os
import platform
import queue as queue_mod
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from runtime.backends.base import V2_TO_NUMPY, BackendError, BuildOptions, TensorInfo
from runtime.fsutil import atomic_write, sha256_file

log = logging.getLogger(__name__)

MAGIC = b"HSTRTENG"
FORMAT = 1
DEFAULT_WORKSPACE_BYTES = 1 << 30
DEFAULT_BUILD_TIMEOUT_S = 1800.0
DEFAULT_MAX_CONTEXTS = 2

INSTALL_HINT = (
    "TensorRT is not installed: install `hotswap[tensorrt]` (tensorrt + cuda-python) on an"
    " NVIDIA machine, or on Jetson create the venv with `--system-site-packages` to use"
    " JetPack's TensorRT"
)

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

Progress = Callable[[str, int, int], None]


def _import_trt(module: str = "tensorrt") -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise BackendError(f"{INSTALL_HINT} ({e})", reason="backend-unavailable") from e


def _major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 0


def _enum_name(value: Any) -> str:
    name = getattr(value, "name", None)
    return str(name) if name is not None else str(value).rsplit(".", 1)[-1]


# --- environment part of the cache key ---------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo:
    gpu_name: str
    compute_capability: str  # "8.7"
    cuda_runtime: str = "unknown"  # major version, e.g. "12"
    cuda_driver: str = "unknown"


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError as e:
            raise BackendError(
                f"cuda-python is not installed: {INSTALL_HINT} ({e})",
                reason="backend-unavailable",
            ) from e
    return cudart


def _cuda_check(result: Any, what: str) -> Any:
    if isinstance(result, tuple):
        err, rest = result[0], result[1:]
    else:
        err, rest = result, ()
    if int(err) != 0:
        raise BackendError(f"CUDA {what} failed: {_enum_name(err)}", reason="cuda-error")
    return rest[0] if len(rest) == 1 else rest


def cuda_device_info() -> DeviceInfo:
    """GPU name and compute capability of the current device, via cuda-python."""
    rt = _cudart()
    device = _cuda_check(rt.cudaGetDevice(), "cudaGetDevice")
    props = _cuda_check(rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name
    if isinstance(name, bytes):
        name = name.split(b"\x00", 1)[0].decode(errors="replace")
    runtime_version = _cuda_check(rt.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion")
    driver_version = _cuda_check(rt.cudaDriverGetVersion(), "cudaDriverGetVersion")
    return DeviceInfo(
        gpu_name=str(name),
        compute_capability=f"{props.major}.{props.minor}",
        cuda_runtime=str(int(runtime_version) // 1000),
        cuda_driver=str(int(driver_version) // 1000),
    )


def compat_key(trt_version: str, device: DeviceInfo) -> dict[str, str]:
    """The environment part of the engine cache key: an engine is valid only where all match.

    The driver version is deliberately left out: engines survive driver updates, and including
    it would force a rebuild of every model on each one.
    """
    return {
        "tensorrt": trt_version,
        "cuda_runtime_major": device.cuda_runtime,
        "gpu": device.gpu_name,
        "compute_capability": device.compute_capability,
        "os": platform.system().lower(),
        "arch": platform.machine().lower(),
    }


def engine_fingerprint(trt_version: str, device: DeviceInfo) -> str:
    """`compat_key` as one string, for `reconciler.core.buildkey` to fold into the build key."""
    encoded = json.dumps(compat_key(trt_version, device), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()


def engine_cache_key(
    onnx_sha256: str,
    options: BuildOptions,
    compat: dict[str, str],
    builder: dict[str, Any],
) -> str:
    """Everything that makes an engine incompatible, hashed (recorded in the artifact header)."""
    fields = {
        "onnx_sha256": onnx_sha256,
        "precision": options.precision,
        "shapes": {n: [list(r) for r in rng] for n, rng in sorted(options.shapes.items())},
        "compat": compat,
        "builder": builder,
    }
    encoded = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()


# --- build (runs in the child process) ---------------------------------------------------


def _check_profiles(network: Any, shapes: dict[str, list[list[int]]]) -> None:
    names: list[str] = []
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        name = tensor.name
        names.append(name)
        dims = tuple(int(d) for d in tensor.shape)
        dynamic = any(d < 0 for d in dims)
        if name not in shapes:
            if dynamic:
                raise BackendError(
                    f"input {name!r} has dynamic dims {list(dims)}: give it a min/opt/max range"
                    " in runtime.shapes",
                    reason="build-failed",
                )
            continue
        lo, opt, hi = (tuple(r) for r in shapes[name])
        for label, rng in (("min", lo), ("opt", opt), ("max", hi)):
            if len(rng) != len(dims):
                raise BackendError(
                    f"input {name!r}: {label} shape {list(rng)} has rank {len(rng)}, the model's"
                    f" input has rank {len(dims)} {list(dims)}",
                    reason="build-failed",
                )
        for axis, d in enumerate(dims):
            a, b, c = lo[axis], opt[axis], hi[axis]
            if d >= 0 and not a == b == c == d:
                raise BackendError(
                    f"input {name!r} axis {axis} is fixed at {d} in the model, but runtime.shapes"
                    f" gives min/opt/max {a}/{b}/{c}",
                    reason="build-failed",
                )
            if not 0 < a <= b <= c:
                raise BackendError(
                    f"input {name!r} axis {axis}: need 0 < min <= opt <= max, got {a}/{b}/{c}",
                    reason="build-failed",
                )
    unknown = sorted(set(shapes) - set(names))
    if unknown:
        raise BackendError(
            f"runtime.shapes names {unknown}, which are not inputs of the model (inputs: {names})",
            reason="build-failed",
        )


def _build(
    trt: Any,
    onnx_path: Path,
    dest: Path,
    options: dict[str, Any],
    timing_cache_path: Path | None,
    report: Callable[..., None],
) -> None:
    """Parse, configure, build and write the artifact. Reports ("progress"|"note", ...) tuples."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = _major(trt.__version__)
    flags = 0
    creation = getattr(trt, "NetworkDefinitionCreationFlag", None)
    if major < 10 and creation is not None and hasattr(creation, "EXPLICIT_BATCH"):
        flags |= 1 << int(creation.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes(), str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        listed = "\n  ".join(errors) or "(the parser gave no message)"
        raise BackendError(
            f"TensorRT's ONNX parser rejected {onnx_path.name} ({len(errors)} error(s)):\n  {listed}",
            reason="build-failed",
        )

    shapes: dict[str, list[list[int]]] = options.get("shapes", {})
    _check_profiles(network, shapes)
    config = builder.create_builder_config()
    if shapes:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in shapes.items():
            profile.set_shape(name, tuple(lo), tuple(opt), tuple(hi))
        config.add_optimization_profile(profile)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options["workspace_bytes"]))

    precision = options.get("precision", "fp32")
    builder_flags = getattr(trt, "BuilderFlag", None)
    if precision in ("fp16", "int8"):
        flag = precision.upper()
        if builder_flags is not None and hasattr(builder_flags, flag):
            config.set_flag(getattr(builder_flags, flag))
        else:
            report(
                "note",
                f"TensorRT {trt.__version__} is strongly typed: no {flag} builder flag exists,"
                f" {precision} must come from the ONNX types",
            )

    monitor = None
    if hasattr(trt, "IProgressMonitor"):
        monitor = _make_progress_monitor(trt, report)
        config.progress_monitor = monitor

    cache_blob = b""
    if timing_cache_path is not None and timing_cache_path.is_file():
        cache_blob = timing_cache_path.read_bytes()
    try:
        timing_cache = config.create_timing_cache(cache_blob)
    except Exception as e:  # a corrupt cache only costs time: start empty
        report("note", f"timing cache {timing_cache_path} unusable ({e}); starting a new one")
        timing_cache = config.create_timing_cache(b"")
    config.set_timing_cache(timing_cache, False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(
            "TensorRT could not build an engine (build_serialized_network returned None;"
            " see the builder log above)",
            reason="build-failed",
        )
    engine = bytes(memoryview(serialized))

    if timing_cache_path is not None:
        with contextlib.suppress(OSError):
            atomic_write(timing_cache_path, memoryview(config.get_timing_cache().serialize()))

    header = dict(options.get("header", {}))
    header["format"] = FORMAT
    header["engine_sha256"] = hashlib.sha256(engine).hexdigest()
    header["device_memory"] = _device_memory(trt, logger, engine)
    encoded = json.dumps(header, sort_keys=True).encode()
    with open(dest, "wb") as f:
        f.write(MAGIC + struct.pack(">I", len(encoded)) + encoded)
        f.write(engine)
        f.flush()
        os.fsync(f.fileno())


def _make_progress_monitor(trt: Any, report: Callable[..., None]) -> Any:
    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._steps: dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self._steps[phase_name] = num_steps
            report("progress", phase_name, 0, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            report("progress", phase_name, step + 1, self._steps.get(phase_name, 0))
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            n = self._steps.get(phase_name, 0)
            report("progress", phase_name, n, n)

    return _Monitor()


def _build_engine(
    onnx_path: str,
    dest: str,
    options: dict[str, Any],
    timing_cache_path: str | None,
    queue: Any,
    trt_module: str = "tensorrt",
) -> None:
    """Child-process entry point: build, then put ("ok",) or ("error", reason, message)."""

    def report(*message: Any) -> None:
        queue.put(message)

    try:
        trt = _import_trt(trt_module)
        _build(
            trt,
            Path(onnx_path),
            Path(dest),
            options,
            Path(timing_cache_path) if timing_cache_path else None,
            report,
        )
        queue.put(("ok",))
    except BackendError as e:
        queue.put(("error", e.reason, str(e)))
    except BaseException as e:  # anything else the builder raises is a failed build
        queue.put(("error", "build-failed", f"{type(e).__name__}: {e}"))


def _onnx_has_qdq(model: Path) -> bool:
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node)


# --- execution -----------------------------------------------------------------------------


class DeviceMemory(Protocol):
    """Device buffers and streams; cuda-python in production, numpy-backed in tests."""

    def alloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def create_stream(self) -> Any: ...
    def destroy_stream(self, stream: Any) -> None: ...
    def stream_handle(self, stream: Any) -> int: ...
    def copy_htod(self, ptr: int, host: np.ndarray, stream: Any) -> None: ...
    def copy_dtoh(self, host: np.ndarray, ptr: int, stream: Any) -> None: ...
    def synchronize(self, stream: Any) -> None: ...


class CudaMemory:
    """DeviceMemory over cuda-python's runtime API (`cuda.bindings.runtime` or `cuda.cudart`)."""

    def __init__(self) -> None:
        self._rt = _cudart()

    def alloc(self, nbytes: int) -> int:
        return int(_cuda_check(self._rt.cudaMalloc(max(nbytes, 1)), "cudaMalloc"))

    def free(self, ptr: int) -> None:
        _cuda_check(self._rt.cudaFree(ptr), "cudaFree")

    def create_stream(self) -> Any:
        return _cuda_check(self._rt.cudaStreamCreate(), "cudaStreamCreate")

    def destroy_stream(self, stream: Any) -> None:
        _cuda_check(self._rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def copy_htod(self, ptr: int, host: np.ndarray, stream: Any) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        _cuda_check(
            self._rt.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, stream),
            "cudaMemcpyAsync",
        )

    def copy_dtoh(self, host: np.ndarray, ptr: int, stream: Any) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _cuda_check(
            self._rt.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, kind, stream),
            "cudaMemcpyAsync",
        )

    def synchronize(self, stream: Any) -> None:
        _cuda_check(self._rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")


@dataclass
class _Worker:
    context: Any
    stream: Any
    buffers: dict[str, tuple[int, int]]  # name -> (device pointer, capacity in bytes)


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
        ins: list[TensorInfo] = []
        outs: list[TensorInfo] = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype = _enum_name(engine.get_tensor_dtype(name))
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
        self.inputs = tuple(ins)
        self.outputs = tuple(outs)
        self._ranges: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        for info in self.inputs:
            if any(d < 0 for d in info.shape):
                lo, _opt, hi = engine.get_tensor_profile_shape(info.name, 0)
                self._ranges[info.name] = (tuple(lo), tuple(hi))
            else:
                self._ranges[info.name] = (info.shape, info.shape)
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
        context, stream, memory = worker.context, worker.stream, self._memory
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
            if context.set_input_shape(info.name, array.shape) is False:
                raise BackendError(
                    f"TensorRT refused shape {list(array.shape)} for {info.name!r}",
                    reason="bad-shape",
                )
            memory.copy_htod(worker.buffers[info.name][0], array, stream)
            hosts.append(array)  # alive until the stream is synchronised
        if not context.execute_async_v3(memory.stream_handle(stream)):
            memory.synchronize(stream)
            raise BackendError("TensorRT execute_async_v3 failed", reason="infer-failed")
        results: dict[str, np.ndarray] = {}
        for info in self.outputs:
            shape = tuple(int(d) for d in context.get_tensor_shape(info.name))
            out = np.empty(shape, dtype=V2_TO_NUMPY[info.datatype])
            ptr, capacity = worker.buffers[info.name]
            if out.nbytes > capacity:
                raise BackendError(
                    f"output {info.name!r} shape {list(shape)} exceeds its buffer",
                    reason="infer-failed",
                )
            memory.copy_dtoh(out, ptr, stream)
            results[info.name] = out
        memory.synchronize(stream)
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


# --- the backend ---------------------------------------------------------------------------


def _device_memory(trt: Any, logger: Any, engine: bytes) -> int:
    """Activation memory one execution context of the engine needs (the weights come on top);
    known only once deserialized, so the build child records it in the header."""
    try:
        deserialized = trt.Runtime(logger).deserialize_cuda_engine(engine)
        size = getattr(deserialized, "device_memory_size_v2", None)
        if size is None:
            size = getattr(deserialized, "device_memory_size", 0)
        return int(size or 0)
    except Exception:  # an unknown figure: the header says 0 and planning uses the engine size
        return 0


def read_header(artifact: Path) -> dict[str, Any]:
    """Only the header of an artifact (no engine bytes read): for memory planning."""
    with artifact.open("rb") as f:
        head = f.read(len(MAGIC) + 4)
        if len(head) < len(MAGIC) + 4 or not head.startswith(MAGIC):
            raise BackendError(f"{artifact.name} is not a hotswap TensorRT engine", "load-failed")
        (length,) = struct.unpack(">I", head[len(MAGIC) :])
        try:
            header: dict[str, Any] = json.loads(f.read(length))
        except ValueError as e:
            raise BackendError(f"{artifact.name}: unreadable engine header", "load-failed") from e
    return header


def read_artifact(artifact: Path) -> tuple[dict[str, Any], bytes]:
    """Header and engine bytes of an artifact; raises load-failed on a malformed or torn file."""
    data = artifact.read_bytes()
    if len(data) < len(MAGIC) + 4 or not data.startswith(MAGIC):
        raise BackendError(f"{artifact.name} is not a hotswap TensorRT engine", "load-failed")
    (length,) = struct.unpack(">I", data[len(MAGIC) : len(MAGIC) + 4])
    start = len(MAGIC) + 4
    try:
        header = json.loads(data[start : start + length])
    except ValueError as e:
        raise BackendError(f"{artifact.name}: unreadable engine header", "load-failed") from e
    engine = data[start + length :]
    if hashlib.sha256(engine).hexdigest() != header.get("engine_sha256"):
        raise BackendError(
            f"{artifact.name}: engine bytes do not match their sha256 (torn or tampered)",
            reason="load-failed",
        )
    return header, engine


class TensorRTBackend:
    name = "tensorrt"

    def __init__(
        self,
        *,
        workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
        build_timeout_s: float = DEFAULT_BUILD_TIMEOUT_S,
        max_contexts: int = DEFAULT_MAX_CONTEXTS,
        timing_cache: Path | None = None,
        progress: Progress | None = None,
        device_info: Callable[[], DeviceInfo] | None = None,
        memory: Callable[[], DeviceMemory] | None = None,
        trt_module: str = "tensorrt",
    ) -> None:
        self._trt = _import_trt(trt_module)
        self._trt_module = trt_module
        self.version: str = str(self._trt.__version__)
        self.workspace_bytes = workspace_bytes
        self.build_timeout_s = build_timeout_s
        self.max_contexts = max_contexts
        self.timing_cache = timing_cache
        self.progress = progress
        self._device_info = device_info or cuda_device_info
        self._memory = memory or CudaMemory
        self._compat: dict[str, str] | None = None

    def compat_key(self) -> dict[str, str]:
        if self._compat is None:
            self._compat = compat_key(self.version, self._device_info())
        return self._compat

    def engine_fingerprint(self) -> str:
        return engine_fingerprint(self.version, self._device_info())

    def builder_settings(self) -> dict[str, Any]:
        return {"workspace_bytes": self.workspace_bytes}

    def memory_need(self, artifact: Path) -> int:
        """Device memory an instance needs: the engine (its weights) plus, per execution
        context, the activation memory the engine reported when it was built."""
        header = read_header(artifact)
        weights = artifact.stat().st_size
        return weights + int(header.get("device_memory", 0)) * self.max_contexts

    def memory_free(self) -> int | None:
        """Free device memory now: a candidate engine that does not fit beside the serving one
        makes the swap sequential (see reconciler.ops.context)."""
        try:
            rt = _cudart()
            free, _total = _cuda_check(rt.cudaMemGetInfo(), "cudaMemGetInfo")
        except BackendError:
            return None
        return int(free)

    @property
    def cache_identity(self) -> str:
        """What the control plane's build key holds for this backend: an engine is reused only
        under the same TensorRT, CUDA major, GPU, compute capability, OS/arch and builder
        settings, so a changed device or setting means a rebuild, never a refused load."""
        settings = json.dumps(self.builder_settings(), sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(f"{self.engine_fingerprint()}|{settings}".encode()).hexdigest()
        return f"{self.version}+{digest[:16]}"

    def timing_cache_path(self, dest: Path) -> Path:
        """Beside the engine cache (one per TensorRT/GPU key), unless configured."""
        if self.timing_cache is not None:
            return self.timing_cache
        digest = engine_fingerprint(self.version, self._device_info())[:16]
        return dest.parent.parent / ".tensorrt-timing" / f"{digest}.cache"

    def build(self, model: Path, dest: Path, options: BuildOptions) -> None:
        if options.precision == "int8" and not _onnx_has_qdq(model):
            raise BackendError(
                "precision int8 with TensorRT needs an explicitly quantized ONNX (QuantizeLinear/"
                "DequantizeLinear nodes); implicit calibration is deprecated since TensorRT 10.1"
                " and removed in 11",
                reason="precision-unsupported",
            )
        child_options = self.child_options(model, options)
        self._run_child(model, dest, child_options, self.timing_cache_path(dest))
        if not dest.exists() or dest.stat().st_size == 0:
            raise BackendError("TensorRT build wrote no engine", reason="build-failed")

    def child_options(self, model: Path, options: BuildOptions) -> dict[str, Any]:
        """What the build child gets: the options plus the artifact header (with the cache key)."""
        compat = self.compat_key()
        builder = self.builder_settings()
        shapes = {n: [list(r) for r in rng] for n, rng in options.shapes.items()}
        header = {
            "key": engine_cache_key(sha256_file(model), options, compat, builder),
            "compat": compat,
            "precision": options.precision,
            "shapes": shapes,
            "builder": builder,
        }
        return {
            "precision": options.precision,
            "shapes": shapes,
            "workspace_bytes": self.workspace_bytes,
            "header": header,
        }

    def _run_child(
        self, model: Path, dest: Path, options: dict[str, Any], timing_cache: Path
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        q = ctx.Queue()
        proc = ctx.Process(
            target=_build_engine,
            args=(str(model), str(dest), options, str(timing_cache), q, self._trt_module),
            name=f"hotswap-trt-build-{model.stem}",
            daemon=True,
        )
        deadline = time.monotonic() + self.build_timeout_s
        result: tuple[Any, ...] | None = None
        proc.start()
        try:
            while True:
                try:
                    message = q.get(timeout=min(0.2, max(0.01, deadline - time.monotonic())))
                except queue_mod.Empty:
                    if not proc.is_alive():
                        # drain what the child put just before exiting
                        with contextlib.suppress(queue_mod.Empty):
                            while result is None:
                                result = self._handle(q.get(timeout=0.5))
                        break
                    if time.monotonic() >= deadline:
                        proc.kill()
                        proc.join(10)
                        raise BackendError(
                            f"TensorRT build of {model.name} took longer than"
                            f" {self.build_timeout_s:g} s; the builder was killed",
                            reason="build-timeout",
                        ) from None
                    continue
                result = self._handle(message)
                if result is not None:
                    break
            proc.join(max(1.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(10)
        finally:
            if proc.is_alive():
                proc.kill()
                proc.join(10)
            q.close()
            q.join_thread()
        if result is not None and result[0] == "error":
            raise BackendError(str(result[2]), reason=str(result[1]))
        if result is None or proc.exitcode != 0:
            code = proc.exitcode
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
            raise BackendError(
                f"the TensorRT builder process for {model.name} died ({how});"
                " the serving process is unaffected",
                reason="build-crashed",
            )

    def _handle(self, message: tuple[Any, ...]) -> tuple[Any, ...] | None:
        kind = message[0]
        if kind == "progress":
            _, phase, step, total = message
            if self.progress is not None:
                self.progress(str(phase), int(step), int(total))
            return None
        if kind == "note":
            log.warning("tensorrt build: %s", message[1])
            return None
        return message

    def load(self, artifact: Path, threads: int | None = None) -> TensorRTSession:
        header, engine_bytes = read_artifact(artifact)
        here = self.compat_key()
        built = header.get("compat", {})
        if built != here:
            diff = sorted(k for k in set(built) | set(here) if built.get(k) != here.get(k))
            changes = ", ".join(f"{k}: {built.get(k)!r} -> {here.get(k)!r}" for k in diff)
            raise BackendError(
                f"{artifact.name} was built for another TensorRT/GPU ({changes}); rebuild it",
                reason="engine-mismatch",
            )
        trt = self._trt
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(engine_bytes)
        if engine is None:
            raise BackendError(
                f"TensorRT could not deserialize {artifact.name}: engine built for another"
                " TensorRT/GPU, or damaged",
                reason="load-failed",
            )
        return TensorRTSession(
            trt, engine, self._memory(), threads or self.max_contexts, runtime=runtime
        )
