"""The backend interface: build an artifact from ONNX, load it, describe its IO, infer, release.

The control plane picks temp paths and renames artifacts into place; a backend only writes where
it is told, so atomicity lives in one place (`runtime.fsutil`, which `reconciler.state.atomic`
wraps) for every backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

# KServe V2 datatype <-> numpy dtype
V2_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
NUMPY_TO_V2 = {v: k for k, v in V2_TO_NUMPY.items()}


class BackendError(Exception):
    def __init__(self, message: str, reason: str = "backend-error") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class TensorInfo:
    name: str
    datatype: str  # V2 datatype
    shape: tuple[int, ...]  # -1 where dynamic

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "fp32"
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=dict
    )


class Session(Protocol):
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...
    def release(self) -> None: ...


class Backend(Protocol):
    name: str
    version: str

    @property
    def cache_identity(self) -> str:
        """What a built artifact's compatibility depends on beyond the model and build options
        (for TensorRT: version, GPU, compute capability, builder settings); in the build key."""

    def build(self, model: Path, dest: Path, options: BuildOptions) -> None:
        """Write the built artifact for `model` to `dest` (a temp path the caller renames)."""

    def load(self, artifact: Path, threads: int | None = None) -> Session: ...
