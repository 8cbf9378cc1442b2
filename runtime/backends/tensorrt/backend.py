"""`TensorRTBackend`: what `get_backend("tensorrt")` returns to the control plane.

It holds the device-wide settings (workspace, build timeout, contexts per engine, timing cache)
that are part of the cache identity, hands builds to a child process (`child.BuildChild`) and
refuses, at load, an engine whose header says it was built for another TensorRT or GPU. The
device facts and device memory come through injectable callables, so tests run it with a fake
`tensorrt` module and no GPU.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime.backends.base import BackendError, BuildOptions
from runtime.backends.tensorrt.artifact import read_artifact, read_header
from runtime.backends.tensorrt.build import onnx_has_qdq
from runtime.backends.tensorrt.child import BuildChild, Progress
from runtime.backends.tensorrt.compat import (
    DeviceInfo,
    compat_key,
    engine_cache_key,
    engine_fingerprint,
    import_trt,
)
from runtime.backends.tensorrt.cuda import (
    CudaMemory,
    DeviceMemory,
    cuda_device_info,
    cuda_free_memory,
)
from runtime.backends.tensorrt.session import TensorRTSession
from runtime.fsutil import sha256_file

DEFAULT_WORKSPACE_BYTES = 1 << 30
DEFAULT_BUILD_TIMEOUT_S = 1800.0
DEFAULT_MAX_CONTEXTS = 2


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
        self._trt = import_trt(trt_module)
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
        return cuda_free_memory()

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
        if options.precision == "int8" and not onnx_has_qdq(model):
            raise BackendError(
                "precision int8 with TensorRT needs an explicitly quantized ONNX (QuantizeLinear/"
                "DequantizeLinear nodes); implicit calibration is deprecated since TensorRT 10.1"
                " and removed in 11",
                reason="precision-unsupported",
            )
        BuildChild(
            model,
            dest,
            self.child_options(model, options),
            self.timing_cache_path(dest),
            trt_module=self._trt_module,
            timeout_s=self.build_timeout_s,
            progress=self.progress,
        ).run()
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

    def load(self, artifact: Path, threads: int | None = None) -> TensorRTSession:
        header, engine_bytes = read_artifact(artifact)
        self._refuse_foreign(artifact, header)
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

    def _refuse_foreign(self, artifact: Path, header: dict[str, Any]) -> None:
        """engine-mismatch, naming what differs, for an engine built under another key."""
        here = self.compat_key()
        built = header.get("compat", {})
        if built != here:
            diff = sorted(k for k in set(built) | set(here) if built.get(k) != here.get(k))
            changes = ", ".join(f"{k}: {built.get(k)!r} -> {here.get(k)!r}" for k in diff)
            raise BackendError(
                f"{artifact.name} was built for another TensorRT/GPU ({changes}); rebuild it",
                reason="engine-mismatch",
            )
