"""Small ONNX models and a TensorRT backend on a fake device, for the TensorRT tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto, helper

from runtime.backends.tensorrt import DeviceInfo, TensorRTBackend
from tests.support.fake_tensorrt import FakeDeviceMemory

DEVICE = DeviceInfo("NVIDIA Orin", "8.7", "12", "540")
SHAPES: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {
    "x": ((1, 4), (4, 4), (8, 4))
}


def make_model(
    path: Path, dims: tuple[Any, ...] = ("N", 4), extra_ops: tuple[str, ...] = (), qdq: bool = False
) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(dims))
    inits = []
    if qdq:
        nodes = [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"], name="dq"),
            helper.make_node("Add", ["d", "d"], ["y"], name="add"),
        ]
        inits = [
            helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]),
            helper.make_tensor("z", TensorProto.INT8, [], [0]),
        ]
    else:
        nodes = [helper.make_node("Add", ["x", "x"], ["y"], name="add")]
    nodes += [
        helper.make_node(op, ["x"], [f"u{i}"], name=f"n{i}", domain="custom")
        for i, op in enumerate(extra_ops)
    ]
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    onnx.save(helper.make_model(graph), str(path))
    return path


def backend(
    memory: FakeDeviceMemory | None = None, device: DeviceInfo = DEVICE, **kw: Any
) -> TensorRTBackend:
    mem = memory or FakeDeviceMemory()
    return TensorRTBackend(device_info=lambda: device, memory=lambda: mem, **kw)
