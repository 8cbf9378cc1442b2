"""Inference backends behind one small interface; `get_backend(name)` imports lazily.

Lazy import matters: TensorRT is optional, and importing hotswap must never require it.
"""

from __future__ import annotations

import contextlib
from typing import Any

from runtime.backends.base import Backend, BackendError, BuildOptions, Session, TensorInfo

# Device-wide backend settings (from the command line), e.g. tensorrt: workspace_bytes,
# build_timeout_s. Set once at start, before any backend is made: they are part of the cache
# identity, so the build key and the backend must see the same values.
_OPTIONS: dict[str, dict[str, Any]] = {}


def configure(name: str, **options: Any) -> None:
    _OPTIONS[name] = {k: v for k, v in options.items() if v is not None}


def get_backend(name: str) -> Backend:
    if name == "onnxruntime":
        from runtime.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend()
    if name == "tensorrt":
        from runtime.backends.tensorrt import TensorRTBackend

        # raises backend-unavailable without TensorRT
        return TensorRTBackend(**_OPTIONS.get("tensorrt", {}))
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
    "configure",
    "get_backend",
]
