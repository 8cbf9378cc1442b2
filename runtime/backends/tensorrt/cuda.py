"""CUDA through cuda-python: the device's facts for the compatibility key, its free memory, and
device buffers and streams for execution.

`DeviceMemory` is the seam the session runs against, so the buffer logic is tested with a
numpy-backed fake and no GPU. cuda-python moved its runtime module in 12.6; both places work.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from runtime.backends.base import BackendError
from runtime.backends.tensorrt.compat import INSTALL_HINT, DeviceInfo, enum_name


def cudart() -> Any:
    try:
        from cuda.bindings import runtime as rt  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart as rt  # older cuda-python
        except ImportError as e:
            raise BackendError(
                f"cuda-python is not installed: {INSTALL_HINT} ({e})",
                reason="backend-unavailable",
            ) from e
    return rt


def cuda_check(result: Any, what: str) -> Any:
    """The value(s) of a cuda-python call, which returns (error, *values); raises on an error."""
    if isinstance(result, tuple):
        err, rest = result[0], result[1:]
    else:
        err, rest = result, ()
    if int(err) != 0:
        raise BackendError(f"CUDA {what} failed: {enum_name(err)}", reason="cuda-error")
    return rest[0] if len(rest) == 1 else rest


def cuda_device_info() -> DeviceInfo:
    """GPU name and compute capability of the current device, via cuda-python."""
    rt = cudart()
    device = cuda_check(rt.cudaGetDevice(), "cudaGetDevice")
    props = cuda_check(rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name
    if isinstance(name, bytes):
        name = name.split(b"\x00", 1)[0].decode(errors="replace")
    runtime_version = cuda_check(rt.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion")
    driver_version = cuda_check(rt.cudaDriverGetVersion(), "cudaDriverGetVersion")
    return DeviceInfo(
        gpu_name=str(name),
        compute_capability=f"{props.major}.{props.minor}",
        cuda_runtime=str(int(runtime_version) // 1000),
        cuda_driver=str(int(driver_version) // 1000),
    )


def cuda_free_memory() -> int | None:
    """Free device memory now, or None where CUDA does not answer."""
    try:
        free, _total = cuda_check(cudart().cudaMemGetInfo(), "cudaMemGetInfo")
    except BackendError:
        return None
    return int(free)


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
        self._rt = cudart()

    def alloc(self, nbytes: int) -> int:
        return int(cuda_check(self._rt.cudaMalloc(max(nbytes, 1)), "cudaMalloc"))

    def free(self, ptr: int) -> None:
        cuda_check(self._rt.cudaFree(ptr), "cudaFree")

    def create_stream(self) -> Any:
        return cuda_check(self._rt.cudaStreamCreate(), "cudaStreamCreate")

    def destroy_stream(self, stream: Any) -> None:
        cuda_check(self._rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def copy_htod(self, ptr: int, host: np.ndarray, stream: Any) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        cuda_check(
            self._rt.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, stream),
            "cudaMemcpyAsync",
        )

    def copy_dtoh(self, host: np.ndarray, ptr: int, stream: Any) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda_check(
            self._rt.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, kind, stream),
            "cudaMemcpyAsync",
        )

    def synchronize(self, stream: Any) -> None:
        cuda_check(self._rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
