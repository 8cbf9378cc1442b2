"""Signed models that pass every static check and misbehave only when run.

The ONNX checker, the interface contract (x: FP32 [N, 4] -> y: FP32 [N, 4], as the tiny models in
`tests.support.tiny_models`) and the signature all accept them; what they do at their first
inference is what the probe (`runtime.backends.probe`) has to contain:

- `hanging_model`: a Loop whose trip count is 2**62 (ORT runs it op by op: centuries);
- `memory_hungry_model`: ConstantOfShape of a shape computed from the input's shape, so nothing
  can fold it ahead of time and the allocation happens at the first run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from reconciler.trust.signing import publish
from tests.support.tiny_models import TinyRegistry

HANG_TRIP_COUNT = 2**62


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _io() -> tuple[onnx.ValueInfoProto, onnx.ValueInfoProto]:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    return x, y


def hanging_model(path: Path, version: str) -> Path:
    """y = x + 2**62 additions of zero: a Loop that never ends in practice."""
    x, y = _io()
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["v_in", "zero"], ["v_out"]),
        ],
        "spin",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, ["N", 4]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, ["N", 4]),
        ],
        [numpy_helper.from_array(np.zeros((), np.float32), "zero")],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body)],
        "hang",
        [x],
        [y],
        [
            numpy_helper.from_array(np.array(HANG_TRIP_COUNT, np.int64), "trips"),
            numpy_helper.from_array(np.array(True), "cond"),
        ],
        doc_string=version,
    )
    return _save(graph, path)


def memory_hungry_model(path: Path, version: str, gib: int = 4) -> Path:
    """y = x + sum(zeros(N * gib * 2**28 floats)) * 0: `gib` GiB per row of the input."""
    x, y = _io()
    rows = gib * 2**28 // 4  # a [rows * N, 4] float tensor of gib GiB when N = 1
    graph = helper.make_graph(
        [
            helper.make_node("Shape", ["x"], ["shape"]),
            helper.make_node("Mul", ["shape", "scale"], ["big"]),
            helper.make_node(
                "ConstantOfShape",
                ["big"],
                ["filled"],
                value=numpy_helper.from_array(np.ones(1, np.float32)),
            ),
            helper.make_node("ReduceSum", ["filled"], ["total"], keepdims=0),
            helper.make_node("Mul", ["total", "nought"], ["nothing"]),
            helper.make_node("Add", ["x", "nothing"], ["y"]),
        ],
        "hungry",
        [x],
        [y],
        [
            numpy_helper.from_array(np.array([rows, 1], np.int64), "scale"),
            numpy_helper.from_array(np.zeros((), np.float32), "nought"),
        ],
        doc_string=version,
    )
    return _save(graph, path)


def publish_hostile(registry: TinyRegistry, name: str, version: str, kind: str) -> Path:
    """Publish version `version` of `name` as a signed package of the hostile `kind`
    ("hang" or "memory"); `registry.spec` and `deployment_yaml` then use it."""
    make = {"hang": hanging_model, "memory": memory_hungry_model}[kind]
    model = make(registry.root.parent / "build" / f"{name}-{version}-{kind}.onnx", version)
    return publish(model, name, version, registry.key, registry.root)
