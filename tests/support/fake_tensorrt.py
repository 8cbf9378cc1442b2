"""A fake `tensorrt` module that records calls, for testing the TensorRT backend without a GPU.

`make(version, behaviour)` returns a fresh module object emulating the 8.6 / 10.x / 11.x API
differences (EXPLICIT_BATCH before 11, FP16/INT8 builder flags before 11, IProgressMonitor from
10). The "engine" it builds is JSON describing the network's IO and profiles; its execution
context computes `output = 2 * first input` through `FakeDeviceMemory` buffers.

Imported by name (`trt_module="tests.support.fake_tensorrt"`, in a spawned build child) the module
configures itself from HOTSWAP_FAKE_TRT_VERSION and HOTSWAP_FAKE_TRT_BEHAVIOUR
("crash" = os._exit(3) in the builder, "hang" = sleep, "build-none" = no engine).
"""

from __future__ import annotations

import enum
import itertools
import json
import os
import threading
import time
import types
from typing import Any

import numpy as np
import onnx

_NP = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
    "UINT8": np.uint8,
}
_ONNX_TO_TRT = {
    onnx.TensorProto.FLOAT: "FLOAT",
    onnx.TensorProto.FLOAT16: "HALF",
    onnx.TensorProto.INT8: "INT8",
    onnx.TensorProto.INT32: "INT32",
    onnx.TensorProto.INT64: "INT64",
    onnx.TensorProto.BOOL: "BOOL",
    onnx.TensorProto.UINT8: "UINT8",
    onnx.TensorProto.BFLOAT16: "BF16",
}


class FakeDeviceMemory:
    """DeviceMemory backed by numpy byte arrays; pointers are unique integers."""

    buffers: dict[int, np.ndarray] = {}
    _ids = itertools.count(0x1000, 0x1000)
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.allocs: list[int] = []
        self.freed: list[int] = []
        self.streams = 0
        self.streams_destroyed = 0

    def alloc(self, nbytes: int) -> int:
        with self._lock:
            ptr = next(self._ids)
        FakeDeviceMemory.buffers[ptr] = np.zeros(nbytes, dtype=np.uint8)
        self.allocs.append(nbytes)
        return ptr

    def free(self, ptr: int) -> None:
        del FakeDeviceMemory.buffers[ptr]
        self.freed.append(ptr)

    def create_stream(self) -> Any:
        self.streams += 1
        return self.streams

    def destroy_stream(self, stream: Any) -> None:
        self.streams_destroyed += 1

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def copy_htod(self, ptr: int, host: np.ndarray, stream: Any) -> None:
        raw = host.reshape(-1).view(np.uint8)
        FakeDeviceMemory.buffers[ptr][: raw.size] = raw

    def copy_dtoh(self, host: np.ndarray, ptr: int, stream: Any) -> None:
        raw = host.reshape(-1).view(np.uint8)
        raw[:] = FakeDeviceMemory.buffers[ptr][: raw.size]

    def synchronize(self, stream: Any) -> None:
        pass


def make(version: str = "10.3.0", behaviour: str = "") -> types.ModuleType:
    major = int(version.split(".")[0])
    mod = types.ModuleType("tensorrt")
    mod.__version__ = version  # type: ignore[attr-defined]
    calls: list[tuple[Any, ...]] = []
    mod.calls = calls  # type: ignore[attr-defined]

    DataType = enum.Enum(
        "DataType", ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8", "INT64", "BF16"]
    )  # type: ignore[misc]
    TensorIOMode = enum.Enum("TensorIOMode", ["INPUT", "OUTPUT"])  # type: ignore[misc]
    MemoryPoolType = enum.IntEnum("MemoryPoolType", ["WORKSPACE"])  # type: ignore[misc]
    mod.DataType = DataType  # type: ignore[attr-defined]
    mod.TensorIOMode = TensorIOMode  # type: ignore[attr-defined]
    mod.MemoryPoolType = MemoryPoolType  # type: ignore[attr-defined]
    if major < 11:
        mod.NetworkDefinitionCreationFlag = enum.IntEnum(  # type: ignore[attr-defined]
            "NetworkDefinitionCreationFlag", {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}
        )
        mod.BuilderFlag = enum.IntEnum("BuilderFlag", ["FP16", "INT8", "TF32"])  # type: ignore[attr-defined]
    else:
        mod.NetworkDefinitionCreationFlag = enum.IntEnum(  # type: ignore[attr-defined]
            "NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 1}
        )
        mod.BuilderFlag = enum.IntEnum("BuilderFlag", ["TF32", "REFIT"])  # type: ignore[attr-defined]

    if major >= 10:

        class IProgressMonitor:
            def __init__(self) -> None:
                calls.append(("IProgressMonitor.__init__",))

        mod.IProgressMonitor = IProgressMonitor  # type: ignore[attr-defined]

    class Logger:
        WARNING = 2

        def __init__(self, severity: int = 2) -> None:
            self.severity = severity

    class Tensor:
        def __init__(self, name: str, shape: tuple[int, ...], dtype: str) -> None:
            self.name, self.shape, self.dtype = name, shape, dtype

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.inputs: list[Tensor] = []
            self.outputs: list[Tensor] = []

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, i: int) -> Tensor:
            return self.inputs[i]

    class ParserError:
        def __init__(self, text: str) -> None:
            self.text = text

        def __str__(self) -> str:
            return self.text

    def _tensors(values: Any) -> list[Tensor]:
        out = []
        for v in values:
            t = v.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
            out.append(Tensor(v.name, dims, _ONNX_TO_TRT.get(t.elem_type, "UNKNOWN")))
        return out

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.network = network
            self.errors: list[ParserError] = []

        def parse(self, data: bytes, path: str | None = None) -> bool:
            calls.append(("parse", path))
            model = onnx.load_from_string(data)
            for node in model.graph.node:
                if node.op_type.startswith("Unsupported"):
                    self.errors.append(
                        ParserError(f"node {node.name}: no importer for op {node.op_type}")
                    )
            if self.errors:
                return False
            inits = {i.name for i in model.graph.initializer}
            self.network.inputs = _tensors(i for i in model.graph.input if i.name not in inits)
            self.network.outputs = _tensors(model.graph.output)
            return True

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> ParserError:
            return self.errors[i]

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, list[list[int]]] = {}

        def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
            calls.append(("set_shape", name, tuple(lo), tuple(opt), tuple(hi)))
            self.shapes[name] = [list(lo), list(opt), list(hi)]

    class TimingCache:
        def __init__(self, blob: bytes) -> None:
            blob = bytes(blob)
            if blob and not blob.startswith(b"timing:"):
                raise ValueError("corrupt timing cache")
            self.count = int(blob.split(b":")[1]) if blob else 0

        def serialize(self) -> bytes:
            return f"timing:{self.count + 1}".encode()

    class Config:
        def __init__(self) -> None:
            self.flags: list[str] = []
            self.profiles: list[Profile] = []
            self.pool: dict[Any, int] = {}
            self.progress_monitor: Any = None
            self.cache: TimingCache | None = None

        def set_flag(self, flag: Any) -> None:
            calls.append(("set_flag", flag.name))
            self.flags.append(flag.name)

        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            calls.append(("set_memory_pool_limit", pool.name, size))
            self.pool[pool] = size

        def add_optimization_profile(self, profile: Profile) -> int:
            calls.append(("add_optimization_profile",))
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, blob: bytes) -> TimingCache:
            calls.append(("create_timing_cache", bytes(blob)))
            return TimingCache(blob)

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            self.cache = cache
            return True

        def get_timing_cache(self) -> TimingCache | None:
            return self.cache

    class Builder:
        def __init__(self, logger: Logger) -> None:
            calls.append(("Builder",))

        def create_network(self, flags: int = 0) -> Network:
            calls.append(("create_network", flags))
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
            calls.append(("build_serialized_network",))
            if behaviour == "crash":
                os._exit(3)
            if behaviour == "hang":
                time.sleep(60)
            if behaviour == "build-none":
                return None
            monitor = config.progress_monitor
            if monitor is not None:
                monitor.phase_start("Building engine", None, 2)
                monitor.step_complete("Building engine", 0)
                monitor.step_complete("Building engine", 1)
                monitor.phase_finish("Building engine")
            profile = config.profiles[0].shapes if config.profiles else {}
            io = [
                {"name": t.name, "mode": "INPUT", "dtype": t.dtype, "shape": list(t.shape)}
                for t in network.inputs
            ] + [
                {"name": t.name, "mode": "OUTPUT", "dtype": t.dtype, "shape": list(t.shape)}
                for t in network.outputs
            ]
            desc = {"version": version, "io": io, "profile": profile, "flags": config.flags}
            return json.dumps(desc).encode()

    class Context:
        def __init__(self, engine: Engine) -> None:
            self.engine = engine
            self.shapes: dict[str, tuple[int, ...]] = {}
            self.addresses: dict[str, int] = {}
            self.executions = 0

        def set_input_shape(self, name: str, shape: Any) -> bool:
            shape = tuple(int(d) for d in shape)
            lo, _opt, hi = self.engine.get_tensor_profile_shape(name, 0)
            if len(shape) != len(lo) or not all(
                a <= d <= b for a, d, b in zip(lo, shape, hi, strict=True)
            ):
                return False
            self.shapes[name] = shape
            return True

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            self.addresses[name] = ptr
            return True

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            t = self.engine.io[name]
            if t["mode"] == "INPUT":
                return self.shapes.get(name, tuple(t["shape"]))
            first = self.shapes.get(self.engine.inputs[0]["name"], ())
            return tuple(
                first[i] if d < 0 and i < len(first) else d for i, d in enumerate(t["shape"])
            )

        def execute_async_v3(self, stream: int) -> bool:
            self.executions += 1
            src = self.engine.inputs[0]
            shape = self.get_tensor_shape(src["name"])
            dtype = _NP[src["dtype"]]
            n = int(np.prod(shape)) * np.dtype(dtype).itemsize
            x = FakeDeviceMemory.buffers[self.addresses[src["name"]]][:n].view(dtype)
            for out in self.engine.outputs:
                odt = _NP[out["dtype"]]
                y = (x * 2).astype(odt).view(np.uint8)
                FakeDeviceMemory.buffers[self.addresses[out["name"]]][: y.size] = y
            return True

    class Engine:
        def __init__(self, desc: dict[str, Any]) -> None:
            self.desc = desc
            self.order = [t["name"] for t in desc["io"]]
            self.io = {t["name"]: t for t in desc["io"]}
            self.inputs = [t for t in desc["io"] if t["mode"] == "INPUT"]
            self.outputs = [t for t in desc["io"] if t["mode"] == "OUTPUT"]
            self.contexts: list[Context] = []
            self.device_memory_size = 4096  # activations per context, as TensorRT reports it

        @property
        def num_io_tensors(self) -> int:
            return len(self.order)

        def get_tensor_name(self, i: int) -> str:
            return self.order[i]

        def get_tensor_mode(self, name: str) -> Any:
            return TensorIOMode[self.io[name]["mode"]]

        def get_tensor_dtype(self, name: str) -> Any:
            return DataType[self.io[name]["dtype"]]

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return tuple(self.io[name]["shape"])

        def get_tensor_profile_shape(self, name: str, profile: int) -> Any:
            if name in self.desc["profile"]:
                return [tuple(r) for r in self.desc["profile"][name]]
            shape = tuple(self.io[name]["shape"])
            return [shape, shape, shape]

        def create_execution_context(self) -> Context:
            ctx = Context(self)
            self.contexts.append(ctx)
            return ctx

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            self.engines: list[Engine] = []

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            calls.append(("deserialize_cuda_engine", len(data)))
            if behaviour == "deserialize-none":
                return None
            try:
                desc = json.loads(bytes(data))
            except ValueError:
                return None
            if desc.get("version") != version:
                return None
            engine = Engine(desc)
            self.engines.append(engine)
            mod.last_engine = engine  # type: ignore[attr-defined]
            return engine

    for cls in (Logger, OnnxParser, Builder, Runtime):
        setattr(mod, cls.__name__, cls)
    return mod


def _configure_self() -> None:
    fake = make(
        os.environ.get("HOTSWAP_FAKE_TRT_VERSION", "10.3.0"),
        os.environ.get("HOTSWAP_FAKE_TRT_BEHAVIOUR", ""),
    )
    for key, value in vars(fake).items():
        if not key.startswith("__") or key == "__version__":
            globals()[key] = value


_configure_self()
