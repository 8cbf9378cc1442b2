"""Inside the build child: parse the ONNX, configure the builder, build, write the artifact.

`_build_engine` is the entry point of the process `child.BuildChild` spawns, so a crash, OOM
or hang in the TensorRT builder kills only that process. It reports back over a queue:
("progress", phase, step, total) and ("note", text) while it works, then ("ok",) or
("error", reason, message).

API differences (DESIGN section 8): the EXPLICIT_BATCH creation flag only before TensorRT 10;
FP16/INT8 builder flags only where `trt.BuilderFlag` still has them (TensorRT 11 networks are
strongly typed: precision comes from the ONNX types, Q/DQ nodes for int8). int8 is accepted only
from an explicitly quantized (Q/DQ) ONNX; implicit calibrators are deprecated since 10.1 and
removed in 11, so none is used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime.backends.base import BackendError
from runtime.backends.tensorrt.artifact import write_artifact
from runtime.backends.tensorrt.compat import import_trt, major_version
from runtime.fsutil import atomic_write

Report = Callable[..., None]
Shapes = dict[str, list[list[int]]]


def onnx_has_qdq(model: Path) -> bool:
    """Whether the model is explicitly quantized (the only int8 TensorRT 10.1+ builds)."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node)


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
        trt = import_trt(trt_module)
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


def _build(
    trt: Any,
    onnx_path: Path,
    dest: Path,
    options: dict[str, Any],
    timing_cache_path: Path | None,
    report: Report,
) -> None:
    """Parse, configure, build and write the artifact."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = _parse_onnx(trt, builder, logger, onnx_path)
    shapes: Shapes = options.get("shapes", {})
    _check_profiles(network, shapes)
    config = _configure(trt, builder, options, shapes, report)
    _load_timing_cache(config, timing_cache_path, report)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(
            "TensorRT could not build an engine (build_serialized_network returned None;"
            " see the builder log above)",
            reason="build-failed",
        )
    engine = bytes(memoryview(serialized))
    if timing_cache_path is not None:
        with contextlib.suppress(OSError):  # a cache not saved only costs time next build
            atomic_write(timing_cache_path, memoryview(config.get_timing_cache().serialize()))
    header = {**options.get("header", {}), "device_memory": _device_memory(trt, logger, engine)}
    write_artifact(dest, header, engine)


def _parse_onnx(trt: Any, builder: Any, logger: Any, onnx_path: Path) -> Any:
    flags = 0
    creation = getattr(trt, "NetworkDefinitionCreationFlag", None)
    if (
        major_version(trt.__version__) < 10
        and creation is not None
        and hasattr(creation, "EXPLICIT_BATCH")
    ):
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
    return network


def _configure(
    trt: Any, builder: Any, options: dict[str, Any], shapes: Shapes, report: Report
) -> Any:
    """Builder config: the optimisation profile, workspace, precision flags, progress monitor."""
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

    if hasattr(trt, "IProgressMonitor"):
        config.progress_monitor = _make_progress_monitor(trt, report)
    return config


def _load_timing_cache(config: Any, path: Path | None, report: Report) -> None:
    cache_blob = b""
    if path is not None and path.is_file():
        cache_blob = path.read_bytes()
    try:
        timing_cache = config.create_timing_cache(cache_blob)
    except Exception as e:  # a corrupt cache only costs time: start empty
        report("note", f"timing cache {path} unusable ({e}); starting a new one")
        timing_cache = config.create_timing_cache(b"")
    config.set_timing_cache(timing_cache, False)


def _check_profiles(network: Any, shapes: Shapes) -> None:
    """Refuse, with the reason, shapes that do not fit the network's inputs."""
    names: list[str] = []
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        names.append(tensor.name)
        _check_input(tensor.name, tuple(int(d) for d in tensor.shape), shapes)
    unknown = sorted(set(shapes) - set(names))
    if unknown:
        raise BackendError(
            f"runtime.shapes names {unknown}, which are not inputs of the model (inputs: {names})",
            reason="build-failed",
        )


def _check_input(name: str, dims: tuple[int, ...], shapes: Shapes) -> None:
    if name not in shapes:
        if any(d < 0 for d in dims):
            raise BackendError(
                f"input {name!r} has dynamic dims {list(dims)}: give it a min/opt/max range"
                " in runtime.shapes",
                reason="build-failed",
            )
        return
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


def _make_progress_monitor(trt: Any, report: Report) -> Any:
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
