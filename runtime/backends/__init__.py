"""Inference backends behind one small interface; `get_backend(name)` imports lazily.

Lazy import matters: TensorRT is optional, and importing hotswap must never require it.
"""

from __future__ import annotations

import contextlib

from runtime.backends.base import Backend, BackendError, BuildOptions, Session, TensorInfo


def get_backend(name: str) -> Backend:
    if name == "onnxruntime":
        from runtime.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend()
    if name == "tensorrt":
        from runtime.backends.tensorrt import TensorRTBackend

        return TensorRTBackend()  # raises backend-unavailable without TensorRT
    raise BackendError(
        f"backend {name!r} is not available on this device", reason="backend-unavailable"
    )


def available_backends() -> dict[str, str]:
    """Backend name -> cache identity (its version and, for TensorRT, the device facts an
    engine depends on), for the backends that work here. The build key includes it."""
    found: dict[str, str] = {}
    for name in ("onnxruntime", "tensorrt"):
        # A missing or broken install (or no GPU) just means "not available here".
        with contextlib.suppress(Exception):
            found[name] = get_backend(name).cache_identity
    return found


__all__ = [
    "Backend",
    "BackendError",
    "BuildOptions",
    "Session",
    "TensorInfo",
    "available_backends",
    "get_backend",
]
