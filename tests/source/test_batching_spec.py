"""`runtime.batching` in desired state: read into the typed spec, bounded by `shapes.max`
(refused on the field's line), and carried into the instance meta the data plane batches by."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from reconciler.core.desired import BatchingSpec, LoadError, ModelSpec, spec_from_json, spec_to_json
from reconciler.source.load import load_file

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

DOC = f"""\
apiVersion: hotswap/v1
kind: ModelDeployment
metadata:
  name: classifier
spec:
  model:
    version: "1"
    source: model.onnx
    sha256: "{SHA}"
  runtime:
    shapes:
      input: {{min: [1,3], opt: [4,3], max: [8,3]}}
      aux: {{min: [1], opt: [1], max: [16]}}
    batching:
{{batching}}
"""


def _load(tmp_path: Path, batching: str) -> ModelSpec | LoadError:
    path = tmp_path / "desired" / "classifier.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DOC.replace("{batching}", batching), encoding="utf-8")
    return load_file(path, "desired/classifier.yaml")


def _line(batching: str, needle: str) -> int:
    text = DOC.replace("{batching}", batching)
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_batching_is_read_with_its_delay_and_preferred_sizes(tmp_path: Path) -> None:
    text = "      max_batch_size: 8\n      max_queue_delay: 500us\n"
    assert isinstance(_load(tmp_path, text), LoadError)  # only ms and s
    text = "      max_batch_size: 8\n      max_queue_delay: 0.5ms\n      preferred_sizes: [4, 8]\n"
    spec = _load(tmp_path, text)
    assert isinstance(spec, ModelSpec), spec
    assert spec.batching == BatchingSpec(8, 0.0005, "0.5ms", (4, 8))
    assert spec.batching.to_meta() == {
        "max_batch_size": 8,
        "max_queue_delay_s": 0.0005,
        "preferred_sizes": [4, 8],
    }


def test_the_delay_defaults_to_2ms(tmp_path: Path) -> None:
    spec = _load(tmp_path, "      max_batch_size: 4\n")
    assert isinstance(spec, ModelSpec) and spec.batching == BatchingSpec(4, 0.002, "2ms", ())


def test_a_batch_larger_than_shapes_max_is_refused_on_its_line(tmp_path: Path) -> None:
    text = "      max_batch_size: 9\n"
    err = _load(tmp_path, text)
    assert isinstance(err, LoadError)
    assert err.line == _line(text, "max_batch_size: 9")
    assert err.field == "spec.runtime.batching.max_batch_size"
    assert err.message.startswith(f"desired/classifier.yaml:{err.line} ")
    assert "shapes.input.max allows in its first dim (8)" in err.message
    assert err.model == "classifier"  # held as it is, not unloaded


def test_a_preferred_size_above_the_max_is_refused(tmp_path: Path) -> None:
    err = _load(tmp_path, "      max_batch_size: 4\n      preferred_sizes: [2, 6]\n")
    assert isinstance(err, LoadError)
    assert err.field is not None and "preferred_sizes" in err.field
    assert "more than max_batch_size 4" in err.message


@pytest.mark.parametrize("text", ["      max_batch_size: 1\n", "      max_queue_delay: 2ms\n"])
def test_the_schema_refuses_what_cannot_batch(tmp_path: Path, text: str) -> None:
    assert isinstance(_load(tmp_path, text), LoadError)


def test_the_journal_form_round_trips_and_older_records_read_without_it(tmp_path: Path) -> None:
    spec = _load(tmp_path, "      max_batch_size: 8\n      preferred_sizes: [8]\n")
    assert isinstance(spec, ModelSpec)
    assert spec_from_json(spec_to_json(spec)) == spec
    older = spec_to_json(spec)
    older.pop("batching")  # a record written before batching existed
    assert spec_from_json(older) == dataclasses.replace(spec, batching=None)
    assert "batching" not in spec_to_json(spec_from_json(older))  # 0.1.0 still reads it
