"""What an engine is tied to: the environment compatibility key and the engine cache key, and
the import of TensorRT itself.

The backend writes `compat_key` into every artifact header and refuses an engine whose key
differs from this device's; `engine_fingerprint` is that key as one string, which the control
plane folds into its build key so that a changed device means a rebuild, never a refused load.
TensorRT is optional (`hotswap[tensorrt]`): it is imported only by `import_trt`, when a backend
is made or a build child starts, never when this package is imported.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import platform
from dataclasses import dataclass
from typing import Any

from runtime.backends.base import BackendError, BuildOptions

INSTALL_HINT = (
    "TensorRT is not installed: install `hotswap[tensorrt]` (tensorrt + cuda-python) on an"
    " NVIDIA machine, or on Jetson create the venv with `--system-site-packages` to use"
    " JetPack's TensorRT"
)


def import_trt(module: str = "tensorrt") -> Any:
    """The TensorRT module (tests pass the name of a fake); backend-unavailable without it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise BackendError(f"{INSTALL_HINT} ({e})", reason="backend-unavailable") from e


def major_version(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 0


def enum_name(value: Any) -> str:
    """`FLOAT` for `DataType.FLOAT`, whichever way the binding spells its enums."""
    name = getattr(value, "name", None)
    return str(name) if name is not None else str(value).rsplit(".", 1)[-1]


@dataclass(frozen=True)
class DeviceInfo:
    gpu_name: str
    compute_capability: str  # "8.7"
    cuda_runtime: str = "unknown"  # major version, e.g. "12"
    cuda_driver: str = "unknown"


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
