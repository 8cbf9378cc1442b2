"""Triton's model configuration extension: what a loaded version is, in Triton's own shape.

`GET /v2/models/{m}[/versions/{v}]/config` (runtime.serving.extensions) and gRPC `ModelConfig`
(which parses this dict into `model_config_pb2.ModelConfig`, so a field name Triton does not
know fails a test) both answer with `model_config`; DeepStream's nvinferserver and
perf_analyzer read it to size their batches and tensors.

It is derived from the model (its inputs and outputs as the backend loaded them) and from what
the control plane put in the instance's meta out of desired state: `backend`, `platform`,
`max_batch_size` (the smallest `shapes.max` first dim over the inputs), and `batching` once
dynamic batching is on. A model batches, in Triton's sense, when the first dim of every input
and output is dynamic: then `max_batch_size` is positive and `dims` leave the batch dim out, as
Triton's do. With nothing declared, it is Triton's own default for such models (4), which
clients read as a hint for the batch they send; this server serves larger batches as well.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runtime.backends.base import TensorInfo
from runtime.serving.slot import Instance

DEFAULT_MAX_BATCH_SIZE = 4  # Triton's default-max-batch-size for models it autocompletes
_BACKENDS = {"onnxruntime_onnx": "onnxruntime", "tensorrt_plan": "tensorrt"}


def data_type(v2_datatype: str) -> str:
    """Triton's config enum for a V2 datatype: FP32 -> TYPE_FP32, BYTES -> TYPE_STRING."""
    return "TYPE_STRING" if v2_datatype == "BYTES" else f"TYPE_{v2_datatype}"


def batches(inst: Instance) -> bool:
    tensors = inst.session.inputs + inst.session.outputs
    return bool(tensors) and all(t.shape and t.shape[0] == -1 for t in tensors)


def max_batch_size(inst: Instance) -> int:
    """0 for a model that does not batch; else what desired state says, or Triton's default."""
    if not batches(inst):
        return 0
    batching = inst.meta.get("batching") or {}
    declared = batching.get("max_batch_size") or inst.meta.get("max_batch_size")
    return int(declared) if declared else DEFAULT_MAX_BATCH_SIZE


def batch_rows(inst: Instance, feeds: dict[str, np.ndarray]) -> int:
    """How many inferences a request holds: its batch dim for a batching model, else 1."""
    if not feeds or not batches(inst):
        return 1
    first = next(iter(feeds.values()))
    return int(first.shape[0]) if first.ndim else 1


def _tensor(t: TensorInfo, batched: bool, is_input: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": t.name,
        "data_type": data_type(t.datatype),
        "dims": list(t.shape[1:] if batched else t.shape),
    }
    if is_input:
        entry["format"] = "FORMAT_NONE"
    return entry


def model_config(name: str, inst: Instance) -> dict[str, Any]:
    """The version's configuration as Triton's JSON (ModelConfig's field names)."""
    platform = str(inst.meta.get("platform", "onnxruntime_onnx"))
    batched = max_batch_size(inst) > 0
    config: dict[str, Any] = {
        "name": name,
        "platform": platform,
        "backend": str(inst.meta.get("backend") or _BACKENDS.get(platform, "")),
        "version_policy": {"latest": {"num_versions": 1}},  # one version serves at a time
        "max_batch_size": max_batch_size(inst),
        "input": [_tensor(t, batched, True) for t in inst.session.inputs],
        "output": [_tensor(t, batched, False) for t in inst.session.outputs],
        "instance_group": [{"name": name, "kind": _kind(platform), "count": 1}],
    }
    batching = inst.meta.get("batching")
    if batching:
        config["dynamic_batching"] = _dynamic_batching(batching)
    return config


def _kind(platform: str) -> str:
    return "KIND_GPU" if platform == "tensorrt_plan" else "KIND_CPU"


def _dynamic_batching(batching: dict[str, Any]) -> dict[str, Any]:
    """Desired state's `runtime.batching` in Triton's words (delay in microseconds)."""
    out: dict[str, Any] = {
        "preferred_batch_size": [int(n) for n in batching.get("preferred_sizes", ())],
        "max_queue_delay_microseconds": int(float(batching.get("max_queue_delay_s", 0)) * 1e6),
    }
    return out
