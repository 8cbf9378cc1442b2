"""Verify a stored model before anything loads it: sha256, structure (reconciler.verify.structure:
ONNX checker, operator domains, opsets, external data, size), interface contract.

Returns a `VerifiedModel`, which only this module can construct; build and warm accept nothing
else, so no code path can load bytes that skipped verification.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from reconciler.core.desired import ModelSpec, TensorSpec
from reconciler.core.errors import IntegrityError
from reconciler.verify.structure import DEFAULT_MAX_BYTES, validate_model
from runtime.fsutil import sha256_file

_PROOF = object()

# ONNX TensorProto element type -> KServe V2 datatype
_ONNX_TO_V2: dict[int, str] = {
    onnx.TensorProto.BOOL: "BOOL",
    onnx.TensorProto.UINT8: "UINT8",
    onnx.TensorProto.UINT16: "UINT16",
    onnx.TensorProto.UINT32: "UINT32",
    onnx.TensorProto.UINT64: "UINT64",
    onnx.TensorProto.INT8: "INT8",
    onnx.TensorProto.INT16: "INT16",
    onnx.TensorProto.INT32: "INT32",
    onnx.TensorProto.INT64: "INT64",
    onnx.TensorProto.FLOAT16: "FP16",
    onnx.TensorProto.FLOAT: "FP32",
    onnx.TensorProto.DOUBLE: "FP64",
    onnx.TensorProto.STRING: "BYTES",
    onnx.TensorProto.BFLOAT16: "BF16",
}


@dataclass(frozen=True)
class VerifiedModel:
    spec: ModelSpec
    path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    _proof: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._proof is not _PROOF:
            raise TypeError("VerifiedModel is made only by reconciler.verify.model.verify()")


def _tensors(values: list[onnx.ValueInfoProto], skip: set[str]) -> tuple[TensorSpec, ...]:
    out = []
    for v in values:
        if v.name in skip:
            continue
        t = v.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
        out.append(TensorSpec(v.name, _ONNX_TO_V2.get(t.elem_type, f"onnx:{t.elem_type}"), dims))
    return tuple(out)


def _fail(spec: ModelSpec, message: str, reason: str) -> IntegrityError:
    where = f" ({spec.file})" if spec.file else ""
    return IntegrityError(f"verify {spec.name} v{spec.version}{where}: {message}", reason=reason)


def _check_contract(
    spec: ModelSpec, kind: str, declared: tuple[TensorSpec, ...], actual: tuple[TensorSpec, ...]
) -> None:
    by_name = {t.name: t for t in actual}
    for i, want in enumerate(declared):
        field_path = f"spec.interface.{kind}[{i}]"
        got = by_name.get(want.name)
        if got is None:
            raise _fail(
                spec,
                f"{field_path}: the model has no {kind[:-1]} {want.name!r} (it has {sorted(by_name)})",
                "contract-break",
            )
        if got.datatype != want.datatype:
            raise _fail(
                spec,
                f"{field_path}.datatype: the model's {want.name!r} is {got.datatype}, not {want.datatype}",
                "contract-break",
            )
        if len(got.shape) != len(want.shape):
            raise _fail(
                spec,
                f"{field_path}.shape: the model's {want.name!r} has rank {len(got.shape)} {list(got.shape)}, not {list(want.shape)}",
                "contract-break",
            )
        for axis, (g, w) in enumerate(zip(got.shape, want.shape, strict=True)):
            if w != -1 and g != -1 and g != w:
                raise _fail(
                    spec,
                    f"{field_path}.shape: dim {axis} of {want.name!r} is {g} in the model, the contract says {w}",
                    "contract-break",
                )
            if w == -1 and g != -1:
                raise _fail(
                    spec,
                    f"{field_path}.shape: dim {axis} of {want.name!r} is fixed at {g} in the model, the contract says dynamic",
                    "contract-break",
                )


def _check_shapes(spec: ModelSpec, inputs: tuple[TensorSpec, ...]) -> None:
    by_name = {t.name: t for t in inputs}
    for name, rng in spec.shapes:
        model_input = by_name.get(name)
        field_path = f"spec.runtime.shapes.{name}"
        if model_input is None:
            raise _fail(
                spec,
                f"{field_path}: the model has no input {name!r} (it has {sorted(by_name)})",
                "shape-mismatch",
            )
        if len(rng.max) != len(model_input.shape):
            raise _fail(
                spec,
                f"{field_path}: rank {len(rng.max)} but the model's input has shape {list(model_input.shape)}",
                "shape-mismatch",
            )
        for axis, dim in enumerate(model_input.shape):
            if dim != -1 and not (rng.min[axis] == rng.opt[axis] == rng.max[axis] == dim):
                raise _fail(
                    spec,
                    f"{field_path}: dim {axis} is fixed at {dim} in the model, min/opt/max must all be {dim}",
                    "shape-mismatch",
                )


def verify(
    spec: ModelSpec,
    path: Path,
    *,
    allowed_domains: Iterable[str] = (),
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> VerifiedModel:
    """sha256 pin, then `validate_model` (structure, operator domains, opsets, size), then the
    interface contract and shape ranges. `allowed_domains` and `max_bytes` come from the
    device's trust policy; the defaults allow only the built-in domains and 2 GiB."""
    actual = sha256_file(path)
    if actual != spec.sha256:
        raise _fail(
            spec,
            f"sha256 of the stored blob is {actual}, desired state pins {spec.sha256}",
            "sha256-mismatch",
        )
    try:
        # A blob from the store is a single file: external data is refused (package_dir=None).
        model = validate_model(
            path, package_dir=None, allowed_domains=allowed_domains, max_bytes=max_bytes
        ).model
    except IntegrityError as e:
        raise _fail(spec, e.message, e.reason) from e
    initializers = {i.name for i in model.graph.initializer}
    inputs = _tensors(list(model.graph.input), initializers)
    outputs = _tensors(list(model.graph.output), set())
    _check_contract(spec, "inputs", spec.inputs, inputs)
    _check_contract(spec, "outputs", spec.outputs, outputs)
    _check_shapes(spec, inputs)
    return VerifiedModel(spec, path, inputs, outputs, _PROOF)
