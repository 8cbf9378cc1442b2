"""Tiny signed model packages (y = 2x over [N, 4]) in a local registry directory.

Small enough to fetch, hash, check and build in milliseconds, real enough for every check the
control plane makes: the ONNX checker, the interface contract, the signed manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from reconciler.core.desired import HealthSpec, ModelSpec, ShapeRange, TensorSpec
from reconciler.trust.signing import generate_keypair, publish

INTERFACE_IN = (TensorSpec("x", "FP32", (-1, 4)),)
INTERFACE_OUT = (TensorSpec("y", "FP32", (-1, 4)),)


def doubling_model(path: Path, version: str) -> Path:
    """y = x + x; the version lands in the graph's doc string so each version's bytes differ."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])], "double", [x], [y], doc_string=version
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@dataclass
class TinyRegistry:
    """A registry directory (`root/NAME/VERSION/`) and the publisher key that signs it."""

    root: Path
    key: Path  # the publisher's private key
    public_key: Path  # what a device puts in its trust dir

    @classmethod
    def create(cls, workdir: Path) -> TinyRegistry:
        private, public, _ = generate_keypair(workdir / "keys")
        return cls(workdir / "registry", private, public)

    def publish(self, name: str, version: str) -> Path:
        """Publish version `version` of `name` (a signed package directory)."""
        model = doubling_model(self.root.parent / "build" / f"{name}-{version}.onnx", version)
        return publish(model, name, version, self.key, self.root)

    def spec(self, name: str, version: str, **fields: object) -> ModelSpec:
        """The deployment of `name` `version` (published on first use) on the fake backend."""
        package = self.root / name / version
        if not package.is_dir():
            package = self.publish(name, version)
        sha = hashlib.sha256((package / "model.onnx").read_bytes()).hexdigest()
        base = ModelSpec(
            name=name,
            version=version,
            source=str(package / "model.onnx"),
            sha256=sha,
            manifest=str(package / "manifest.json"),
            backend="fake",
            shapes=(("x", ShapeRange((1, 4), (1, 4), (8, 4))),),
            inputs=INTERFACE_IN,
            outputs=INTERFACE_OUT,
            health=HealthSpec(warmup_iterations=1),
            file=f"/desired/{name}.yaml",
        )
        return dataclasses.replace(base, **fields) if fields else base  # type: ignore[arg-type]


def deployment_yaml(registry: TinyRegistry, name: str, version: str) -> str:
    """The desired-state file for `name` `version` as an operator writes it (ONNX Runtime)."""
    spec = registry.spec(name, version)
    return f"""apiVersion: hotswap/v1
kind: ModelDeployment
metadata: {{name: {name}}}
spec:
  model: {{version: "{version}", source: {spec.source}, sha256: {spec.sha256}, manifest: {spec.manifest}}}
  runtime:
    backend: onnxruntime
    shapes: {{x: {{min: [1, 4], opt: [1, 4], max: [8, 4]}}}}
  interface:
    inputs: [{{name: x, datatype: FP32, shape: [-1, 4]}}]
    outputs: [{{name: y, datatype: FP32, shape: [-1, 4]}}]
  health: {{warmup: {{iterations: 1}}}}
"""


def sample_input() -> dict[str, np.ndarray]:
    return {"x": np.ones((1, 4), np.float32)}
