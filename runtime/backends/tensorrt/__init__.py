"""TensorRT on NVIDIA GPUs: build a serialized engine from ONNX, run it with CUDA streams.

Optional: installed with `hotswap[tensorrt]` (tensorrt + cuda-python); nothing here imports
TensorRT or CUDA at import time, so importing hotswap never requires them. The modules, in the
order a model meets them:

- `compat`: the environment compatibility key, the engine cache key, importing TensorRT;
- `child`: the serving side of a build, run in a spawned process with a timeout;
- `build`: inside that process, parse, configure and build, then write the artifact;
- `artifact`: the artifact file (magic, JSON header with the key and engine sha256, engine);
- `cuda`: device facts, free memory, buffers and streams through cuda-python;
- `session`: a loaded engine's pool of execution contexts;
- `backend`: `TensorRTBackend`, what `runtime.backends.get_backend("tensorrt")` returns.
"""

from __future__ import annotations

from runtime.backends.tensorrt.artifact import read_artifact, read_header
from runtime.backends.tensorrt.backend import TensorRTBackend
from runtime.backends.tensorrt.build import _build_engine
from runtime.backends.tensorrt.compat import (
    DeviceInfo,
    compat_key,
    engine_cache_key,
    engine_fingerprint,
)
from runtime.backends.tensorrt.cuda import CudaMemory, DeviceMemory, cuda_device_info
from runtime.backends.tensorrt.session import TensorRTSession

__all__ = [
    "CudaMemory",
    "DeviceInfo",
    "DeviceMemory",
    "TensorRTBackend",
    "TensorRTSession",
    "_build_engine",
    "compat_key",
    "cuda_device_info",
    "engine_cache_key",
    "engine_fingerprint",
    "read_artifact",
    "read_header",
]
