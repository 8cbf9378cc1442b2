"""ONNX Runtime on CPU: the embedded default.

Build = the precision transform (int8 by dynamic quantisation; fp16 refused, since the CPU
execution provider runs few fp16 kernels and would fall back op by op, slower than fp32) followed
by offline graph optimisation saved as the artifact, so a swap loads a ready graph and spends no
time optimising while the old version serves.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from runtime.backends.base import NUMPY_TO_V2, BackendError, BuildOptions, TensorInfo

_ORT_TYPE_TO_V2 = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}
assert set(NUMPY_TO_V2.values()) <= set(_ORT_TYPE_TO_V2.values())


def _tensor_infos(args: list) -> tuple[TensorInfo, ...]:
    return tuple(
        TensorInfo(
            a.name,
            _ORT_TYPE_TO_V2.get(a.type, a.type),
            tuple(d if isinstance(d, int) else -1 for d in a.shape),
        )
        for a in args
    )


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
        return trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


_malloc_trim = _load_malloc_trim()


def trim_heap() -> None:
    if _malloc_trim is not None:
        _malloc_trim(0)


class OnnxRuntimeSession:
    def __init__(self, session: ort.InferenceSession) -> None:
        self._session: ort.InferenceSession | None = session
        self.inputs = _tensor_infos(session.get_inputs())
        self.outputs = _tensor_infos(session.get_outputs())
        self._output_names = [o.name for o in self.outputs]
        # One for every run of this session: `terminate` ends the runs in flight (ONNX Runtime
        # checks the flag between kernels) and refuses later ones.
        self._run_options = ort.RunOptions()

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self._session
        if session is None:
            raise BackendError("session was released", reason="infer-failed")
        try:
            values = session.run(self._output_names, feeds, self._run_options)
        except Exception as e:  # ORT raises its own exception types, all meaning "this run failed"
            raise BackendError(f"onnxruntime run failed: {e}", reason="infer-failed") from e
        return dict(zip(self._output_names, values, strict=True))

    def terminate(self) -> None:
        """End this session's runs now and for good (a warm-up past its time, a shutdown)."""
        self._run_options.terminate = True

    def release(self) -> None:
        # Dropping the last reference frees the session's memory arena; trimming then hands
        # the freed pages back to the OS, so RSS does not ratchet up with every swap.
        self._session = None
        trim_heap()


class OnnxRuntimeBackend:
    name = "onnxruntime"
    version = ort.__version__
    cache_identity = version  # an optimised ONNX graph depends on nothing else here

    def build(self, model: Path, dest: Path, options: BuildOptions) -> None:
        if options.precision == "fp16":
            raise BackendError(
                "precision fp16 is not supported by the onnxruntime CPU backend: use fp32 or int8,"
                " or backend tensorrt on an NVIDIA device",
                reason="precision-unsupported",
            )
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".build-") as work:
            source = model
            if options.precision == "int8":
                from onnxruntime.quantization import QuantType, quantize_dynamic

                source = Path(work) / "quantized.onnx"
                try:
                    quantize_dynamic(str(model), str(source), weight_type=QuantType.QInt8)
                except Exception as e:
                    raise BackendError(
                        f"int8 dynamic quantisation failed: {e}", reason="build-failed"
                    ) from e
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            so.optimized_model_filepath = str(dest)
            so.log_severity_level = 3
            try:
                ort.InferenceSession(str(source), so, providers=["CPUExecutionProvider"])
            except Exception as e:
                raise BackendError(
                    f"onnxruntime could not build the model: {e}", reason="build-failed"
                ) from e
        if not dest.exists() or dest.stat().st_size == 0:
            raise BackendError("onnxruntime wrote no optimised model", reason="build-failed")

    def load(self, artifact: Path, threads: int | None = None) -> OnnxRuntimeSession:
        so = ort.SessionOptions()
        # The artifact is already optimised; doing it again would only cost swap time.
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.intra_op_num_threads = threads or max(1, os.cpu_count() or 1)
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(artifact), so, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise BackendError(
                f"onnxruntime could not load {artifact.name}: {e}", reason="load-failed"
            ) from e
        return OnnxRuntimeSession(session)
