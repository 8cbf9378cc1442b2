"""verify(): sha256, ONNX checker, interface contract and shape ranges; the VerifiedModel it
returns is the only thing build and warm accept."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.desired import ModelSpec, ShapeRange, TensorSpec
from reconciler.core.errors import IntegrityError
from reconciler.verify.model import VerifiedModel, verify
from tests.support.units import model_path, spec_from_doc


@pytest.fixture
def v1(kit: Any, tmp_path: Path) -> ModelSpec:
    return spec_from_doc(kit.doc("1"), tmp_path / "desired")


def fails(spec: ModelSpec, path: Path) -> IntegrityError:
    with pytest.raises(IntegrityError) as info:
        verify(spec, path)
    assert info.value.terminal
    return info.value


def test_good_model_verifies(kit: Any, v1: ModelSpec) -> None:
    verified = verify(v1, model_path(kit, "1"))
    assert isinstance(verified, VerifiedModel)
    assert verified.spec is v1 and verified.path == model_path(kit, "1")
    assert verified.inputs == (TensorSpec("input", "FP32", (-1, 3, 224, 224)),)
    assert verified.outputs == (TensorSpec("logits", "FP32", (-1, 1000)),)


def test_verified_model_cannot_be_made_by_anyone_else(kit: Any, v1: ModelSpec) -> None:
    with pytest.raises(TypeError):
        VerifiedModel(v1, model_path(kit, "1"), (), ())
    with pytest.raises(TypeError):
        VerifiedModel(v1, model_path(kit, "1"), (), (), object())


def test_sha_mismatch(kit: Any, v1: ModelSpec) -> None:
    err = fails(v1, model_path(kit, "2"))  # v2's bytes under v1's pin
    assert err.reason == "sha256-mismatch"
    assert v1.sha256 in str(err) and "classifier v1" in str(err)


def test_garbage_bytes_are_not_a_model(tmp_path: Path, v1: ModelSpec) -> None:
    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"\x00\xffthis is not protobuf at all\x00" * 20)
    spec = dataclasses.replace(v1, sha256=hashlib.sha256(junk.read_bytes()).hexdigest())
    err = fails(spec, junk)
    assert err.reason == "onnx-invalid"
    assert "not a valid ONNX model" in str(err)


def test_truncated_model_is_invalid(kit: Any, tmp_path: Path, v1: ModelSpec) -> None:
    data = model_path(kit, "1").read_bytes()
    cut = tmp_path / "model.onnx"
    cut.write_bytes(data[: len(data) // 2])
    spec = dataclasses.replace(v1, sha256=hashlib.sha256(cut.read_bytes()).hexdigest())
    assert fails(spec, cut).reason == "onnx-invalid"


def test_v4_breaks_v1s_interface(kit: Any, tmp_path: Path) -> None:
    # v4's own file carries the classifier's contract (logits [N,1000]); its model gives scores
    v4 = spec_from_doc(kit.doc("4"), tmp_path / "desired")
    err = fails(v4, model_path(kit, "4"))
    assert err.reason == "contract-break"
    assert "spec.interface.outputs[0]" in str(err)
    assert "'logits'" in str(err) and "scores" in str(err)


@pytest.mark.parametrize(
    "kind,tensor,fragment",
    [
        ("inputs", TensorSpec("input", "FP16", (-1, 3, 224, 224)), "inputs[0].datatype"),
        ("inputs", TensorSpec("input", "FP32", (-1, 224, 224)), "inputs[0].shape"),
        ("inputs", TensorSpec("input", "FP32", (-1, 3, 112, 224)), "dim 2"),
        ("inputs", TensorSpec("input", "FP32", (-1, 3, -1, 224)), "the contract says dynamic"),
        ("outputs", TensorSpec("logits", "FP32", (-1, 10)), "outputs[0].shape"),
        ("inputs", TensorSpec("image", "FP32", (-1, 3, 224, 224)), "no input 'image'"),
    ],
)
def test_contract_breaks_name_the_field(
    kit: Any, v1: ModelSpec, kind: str, tensor: TensorSpec, fragment: str
) -> None:
    spec = dataclasses.replace(v1, **{kind: (tensor,)})
    err = fails(spec, model_path(kit, "1"))
    assert err.reason == "contract-break"
    assert f"spec.interface.{kind}[0]" in str(err) and fragment in str(err)


def test_a_model_more_permissive_than_the_contract_keeps_it(kit: Any, v1: ModelSpec) -> None:
    # The contract fixes the batch at 1; the model takes any batch: every promised request works.
    fixed = dataclasses.replace(v1, inputs=(TensorSpec("input", "FP32", (1, 3, 224, 224)),))
    assert verify(fixed, model_path(kit, "1"))
    # A contract that lists nothing promises nothing.
    empty = dataclasses.replace(v1, inputs=(), outputs=())
    assert verify(empty, model_path(kit, "1")).outputs[0].name == "logits"


def test_shapes_for_a_missing_input_are_a_shape_mismatch(kit: Any, v1: ModelSpec) -> None:
    rng = ShapeRange((1, 3, 224, 224), (1, 3, 224, 224), (8, 3, 224, 224))
    spec = dataclasses.replace(v1, shapes=(("pixels", rng),))
    err = fails(spec, model_path(kit, "1"))
    assert err.reason == "shape-mismatch"
    assert "spec.runtime.shapes.pixels" in str(err)


@pytest.mark.parametrize(
    "rng",
    [
        ShapeRange((1, 3, 224), (1, 3, 224), (8, 3, 224)),  # wrong rank
        ShapeRange((1, 3, 224, 224), (1, 3, 224, 224), (8, 3, 256, 224)),  # fixed dim varies
    ],
)
def test_shape_ranges_must_fit_the_model_input(kit: Any, v1: ModelSpec, rng: ShapeRange) -> None:
    spec = dataclasses.replace(v1, shapes=(("input", rng),))
    assert fails(spec, model_path(kit, "1")).reason == "shape-mismatch"
