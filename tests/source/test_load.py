"""Desired-state loading: a valid file is a ModelSpec, anything else a LoadError, never a raise."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.core.desired import (
    Gates,
    HealthSpec,
    LoadError,
    ModelSpec,
    RetentionSpec,
    RolloutSpec,
    RolloutStage,
    ShapeRange,
    TensorSpec,
)
from reconciler.source.load import load_dir, load_file, parse_duration

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

FULL = f"""\
# a comment
apiVersion: hotswap/v1
kind: ModelDeployment
metadata:
  name: classifier
  labels: {{team: vision}}
spec:
  model:
    version: 3
    source: ../registry/classifier/3/model.onnx
    sha256: {SHA}
    manifest: ../registry/classifier/3/manifest.json
  runtime:
    backend: tensorrt
    precision: fp16
    shapes:
      input: {{min: [1,3,224,224], opt: [4,3,224,224], max: [8,3,224,224]}}
      aux: {{min: [1], opt: [1], max: [2]}}
  interface:
    inputs:  [{{name: input,  datatype: FP32, shape: [-1,3,224,224]}}]
    outputs: [{{name: logits, datatype: FP32, shape: [-1,1000]}}]
  health:
    warmup: {{iterations: 20}}
    golden: ../models/classifier-golden.npz
    atol: 1.0e-4
    rtol: 0
    max_latency_ms: 50
  rollout:
    strategy: canary
    steps: [{{weight: 10, for: 30s}}, {{weight: 50, for: 1.5m}}]
    gates: {{max_error_rate: 0.01, max_p99_latency_ratio: 1.5, min_requests: 50}}
    on_failure: revert
  retention:
    keep_standby: false
    keep_versions: 5
"""

MINIMAL = f"""\
apiVersion: hotswap/v1
kind: ModelDeployment
metadata:
  name: {{name}}
spec:
  model:
    version: "1"
    source: model.onnx
    sha256: "{SHA}"
"""


_PAIRS = [("a", "b"), ("b", "c"), ("c", "d"), ("d", "e"), ("e", "f"), ("f", "g"), ("g", "h")]


def _line(text: str, needle: str) -> int:
    """1-based line of the first line containing `needle`."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _error(tmp_path: Path, text: str | bytes, name: str = "x.yaml") -> LoadError:
    result = load_file(_write(tmp_path / "desired" / name, text), f"desired/{name}")
    assert isinstance(result, LoadError), result
    assert result.file == f"desired/{name}"
    assert result.message.startswith(f"desired/{name}")
    return result


def test_full_document_round_trip(tmp_path: Path) -> None:
    path = _write(tmp_path / "snap" / "desired" / "classifier.yaml", FULL)
    spec = load_file(path, "desired/classifier.yaml")
    assert isinstance(spec, ModelSpec), spec
    snap = str(tmp_path / "snap")
    assert spec == ModelSpec(
        name="classifier",
        version="3",  # an integer version is read as its string
        source=f"{snap}/registry/classifier/3/model.onnx",
        sha256=SHA,
        backend="tensorrt",
        precision="fp16",
        shapes=(  # sorted by input name
            ("aux", ShapeRange((1,), (1,), (2,))),
            ("input", ShapeRange((1, 3, 224, 224), (4, 3, 224, 224), (8, 3, 224, 224))),
        ),
        inputs=(TensorSpec("input", "FP32", (-1, 3, 224, 224)),),
        outputs=(TensorSpec("logits", "FP32", (-1, 1000)),),
        health=HealthSpec(20, f"{snap}/models/classifier-golden.npz", 1e-4, 0.0, 50.0),
        rollout=RolloutSpec(
            "canary",
            "revert",
            steps=(RolloutStage(10, 30.0, "30s"), RolloutStage(50, 90.0, "1.5m")),
            gates=Gates(max_error_rate=0.01, max_p99_latency_ratio=1.5, min_requests=50),
        ),
        retention=RetentionSpec(keep_standby=False, keep_versions=5),
        manifest=f"{snap}/registry/classifier/3/manifest.json",
        file="desired/classifier.yaml",
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30.0), ("1.5m", 90.0), ("5m", 300.0), ("1h", 3600.0), ("0s", 0.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_canary_and_shadow_get_default_steps(tmp_path: Path) -> None:
    for strategy, weights in (("canary", [10, 50]), ("shadow", [100]), ("immediate", [])):
        text = MINIMAL.format(name="m") + f"  rollout:\n    strategy: {strategy}\n"
        spec = load_file(_write(tmp_path / f"{strategy}.yaml", text))
        assert isinstance(spec, ModelSpec), spec
        assert [s.weight for s in spec.rollout.stages] == weights


def test_rollout_step_without_traffic_is_refused_at_its_line(tmp_path: Path) -> None:
    text = MINIMAL.format(name="m") + (
        "  rollout:\n    strategy: canary\n    steps:\n"
        "      - {weight: 10, for: 5s}\n      - {weight: 0, for: 5s}\n"
    )
    err = load_file(_write(tmp_path / "m.yaml", text), "desired/m.yaml")
    assert isinstance(err, LoadError)
    assert err.field == "spec.rollout.steps[1].weight"
    assert err.line == text.splitlines().index("      - {weight: 0, for: 5s}") + 1
    assert "can never be judged" in err.message


def test_defaults_and_display_relative_to_cwd(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path / "desired" / "m.yaml", MINIMAL.format(name="m"))
    spec = load_file(path)
    assert isinstance(spec, ModelSpec), spec
    assert spec.file == os.path.join("desired", "m.yaml")
    assert (spec.backend, spec.precision, spec.shapes, spec.inputs, spec.outputs) == (
        "onnxruntime",
        "fp32",
        (),
        (),
        (),
    )
    assert (spec.health, spec.rollout, spec.retention) == (
        HealthSpec(),
        RolloutSpec(),
        RetentionSpec(),
    )
    assert spec.manifest is None
    assert spec.source == str(tmp_path / "desired" / "model.onnx")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("https://models.example/c/3/model.onnx", "https://models.example/c/3/model.onnx"),
        ("http://10.0.0.1:8080/m.onnx", "http://10.0.0.1:8080/m.onnx"),
        ("file:///opt/models/my%20model.onnx", "/opt/models/my model.onnx"),
        ("/opt/models/../models/m.onnx", "/opt/models/m.onnx"),
        (
            f"oci://registry.example/models/c:5@sha256:{SHA}",
            f"oci://registry.example/models/c:5@sha256:{SHA}",
        ),
        ("oci://127.0.0.1:5000/m:1", "oci://127.0.0.1:5000/m:1"),
    ],
)
def test_source_urls_and_absolute_paths(tmp_path: Path, source: str, expected: str) -> None:
    text = MINIMAL.format(name="m").replace("source: model.onnx", f"source: {source}")
    spec = load_file(_write(tmp_path / "m.yaml", text))
    assert isinstance(spec, ModelSpec), spec
    assert spec.source == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("s3://bucket/m.onnx", "unsupported URL scheme 's3'"),
        ("https:///m.onnx", "has no host"),
        ("file://server/m.onnx", "names a remote host"),
        ("oci://registry.example/Models/c:5", "repository name must be lowercase"),
        ("oci://registry.example/m@sha256:abc", "64 lowercase hex"),
        ("oci://registry.example/m:1#model.onnx", "without #"),
        ("oci://registry.example", "want oci://HOST"),
    ],
)
def test_unusable_urls(tmp_path: Path, source: str, message: str) -> None:
    text = MINIMAL.format(name="m").replace("source: model.onnx", f"source: {source}")
    err = _error(tmp_path, text)
    assert (err.line, err.field, err.model) == (_line(text, "source:"), "spec.model.source", "m")
    assert message in err.message


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    text = MINIMAL.format(name="m") + "  runtime: {backend: onnxruntime\n  health: {}\n"
    err = _error(tmp_path, text)
    assert err.line == _line(text, "health:")
    assert err.message.startswith(f"desired/x.yaml:{err.line} YAML syntax error: ")
    assert "(column " in err.message
    assert err.model is None


def test_enum_violation_message_and_line(tmp_path: Path) -> None:
    text = FULL.replace("precision: fp16", "precision: fp64")
    err = _error(tmp_path, text, "classifier.yaml")
    line = _line(text, "precision:")
    assert err.message == (
        f"desired/classifier.yaml:{line} spec.runtime.precision: "
        "'fp64' is not one of ['fp32', 'fp16', 'int8']"
    )
    assert (err.line, err.field, err.model) == (line, "spec.runtime.precision", "classifier")


def test_unknown_field_names_key_and_its_line(tmp_path: Path) -> None:
    text = FULL.replace("    manifest:", "    foo: 1\n    manifest:")
    err = _error(tmp_path, text)
    assert err.line == _line(text, "foo:")
    assert err.field == "spec.model.foo"
    assert err.message.endswith(
        "spec.model.foo: unknown field 'foo' (allowed: manifest, sha256, source, version)"
    )


def test_unknown_field_in_list_item(tmp_path: Path) -> None:
    text = FULL.replace("datatype: FP32, shape: [-1,1000]", "datatype: FP32, dims: [1]")
    err = _error(tmp_path, text)
    assert err.line == _line(text, "dims:")
    # the missing 'shape' is on the same line; the unknown key sorts first by field path
    assert err.field in ("spec.interface.outputs[0]", "spec.interface.outputs[0].dims")
    assert "(and 1 more)" in err.message


def test_missing_required_field(tmp_path: Path) -> None:
    text = "\n".join(line for line in FULL.splitlines() if "sha256" not in line)
    err = _error(tmp_path, text)
    assert err.line == _line(text, "  model:")
    assert err.field == "spec.model"
    assert err.message == f"desired/x.yaml:{err.line} spec.model: missing required field 'sha256'"
    assert err.model == "classifier"


def test_several_missing_fields_are_each_named(tmp_path: Path) -> None:
    text = "\n".join(line for line in FULL.splitlines() if "sha256" not in line)
    err = _error(tmp_path, text.replace("    source:", "    sauce:"))
    assert err.message.endswith("spec.model: missing required field 'sha256' (and 2 more)")


def test_bad_sha256_pattern(tmp_path: Path) -> None:
    text = FULL.replace(SHA, SHA.upper())
    err = _error(tmp_path, text)
    assert (err.line, err.field) == (_line(text, "sha256:"), "spec.model.sha256")
    assert "does not match '^[0-9a-f]{64}$'" in err.message


def test_trailing_newline_does_not_satisfy_pattern(tmp_path: Path) -> None:
    err = _error(tmp_path, FULL.replace(SHA, f'"{SHA}\\n"'))
    assert err.field == "spec.model.sha256"


_RETENTION, _WARMUP = "spec.retention.keep_versions", "spec.health.warmup.iterations"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("keep_versions: 5", "keep_versions: x", f"{_RETENTION}: 'x' is not of type 'integer'"),
        ("keep_versions: 5", "keep_versions: 5.0", f"{_RETENTION}: 5.0 is not of type 'integer'"),
        ("version: 3", "version: 3.10", "spec.model.version: 3.1 is not of type 'string', 'int"),
        ("atol: 1.0e-4", "atol: .nan", "spec.health.atol: nan is not of type 'number'"),
        ("iterations: 20", "iterations: -1", f"{_WARMUP}: -1 is less than the minimum of 0"),
        ("shape: [-1,1000]", "shape: [-1,0]", "spec.interface.outputs[0].shape[1]: 0 is not valid"),
        ("for: 30s", "for: 30", "spec.rollout.steps[0].for: 30 is not of type 'string'"),
    ],
)
def test_wrong_types_and_ranges(tmp_path: Path, old: str, new: str, expected: str) -> None:
    text = FULL.replace(old, new)
    err = _error(tmp_path, text)
    assert err.message.startswith(f"desired/x.yaml:{_line(text, new)} {expected}")
    assert err.field == expected.split(": ")[0]


@pytest.mark.parametrize(
    "content",
    [
        "- a\n- b\n",
        "just a string\n",
        "42\n",
        "",
        "# only a comment\n",
        b"\x00\x01\x02\xff\xfe binary",
        "name: caf\xe9\n".encode("latin-1"),  # not UTF-8
        "a: 1\n---\nb: 2\n",
        "a: !!python/object/apply:os.system ['true']\n",
        "a: 2024-13-45\n",
        "a: !!int ''\n",
        "a: " + "9" * 5000 + "\n",
        "a: &a [*a]\n",
        "[" * 5000,
        "a: &a [x,x,x,x,x,x,x,x,x,x]\n"  # a billion laughs: 10**8 nodes once expanded
        + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in _PAIRS),
    ],
    ids=lambda c: repr(c[:12]),
)
def test_unusable_documents_are_errors_not_exceptions(tmp_path: Path, content) -> None:
    err = _error(tmp_path, content)
    assert err.model is None


def test_shape_range_min_greater_than_opt(tmp_path: Path) -> None:
    text = FULL.replace("opt: [4,3,224,224]", "opt: [4,1,224,224]")
    err = _error(tmp_path, text)
    assert (err.line, err.field, err.model) == (
        _line(text, "input: {min"),
        "spec.runtime.shapes.input",
        "classifier",
    )
    assert "spec.runtime.shapes.input: min [1,3,224,224] > opt [4,1,224,224]" in err.message


def test_shape_range_lengths_must_match(tmp_path: Path) -> None:
    err = _error(tmp_path, FULL.replace("max: [8,3,224,224]", "max: [8,3,224]"))
    assert err.field == "spec.runtime.shapes.input"
    assert "different lengths" in err.message


def test_model_is_named_when_metadata_readable_but_spec_invalid(tmp_path: Path) -> None:
    err = _error(tmp_path, "apiVersion: hotswap/v1\nkind: ModelDeployment\nmetadata: {name: c}\n")
    assert (err.model, err.field, err.line) == ("c", None, 1)
    assert err.message == "desired/x.yaml:1 missing required field 'spec'"
    err = _error(tmp_path, FULL.replace("name: classifier", "name: Not_Valid"))
    assert err.model is None


def test_first_error_in_file_is_reported(tmp_path: Path) -> None:
    text = FULL.replace("precision: fp16", "precision: fp64").replace(
        "keep_versions: 5", "keep_versions: 0"
    )
    err = _error(tmp_path, text)
    assert err.field == "spec.runtime.precision"
    assert err.message.endswith(" (and 1 more)")


def test_load_dir_duplicate_names_hold_the_model(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "desired" / "a.yaml", MINIMAL.format(name="dup"))
    _write(tmp_path / "desired" / "b.yml", MINIMAL.format(name="dup"))
    _write(tmp_path / "desired" / "c.yaml", MINIMAL.format(name="other"))
    _write(tmp_path / "desired" / ".hidden.yaml", "garbage: [")
    _write(tmp_path / "desired" / "notes.txt", "garbage: [")
    (tmp_path / "desired" / "sub.yaml").mkdir()
    desired = load_dir(Path("desired"), revision="abc123")
    assert desired.revision == "abc123"
    assert list(desired.models) == ["other"]
    a, b = os.path.join("desired", "a.yaml"), os.path.join("desired", "b.yml")
    assert [(e.file, e.model, e.line, e.field) for e in desired.errors] == [
        (a, "dup", 4, "metadata.name"),
        (b, "dup", 4, "metadata.name"),
    ]
    assert desired.errors[0].message.endswith(f"model 'dup' is also defined in {b}")
    assert desired.errors[1].message.endswith(f"model 'dup' is also defined in {a}")
    assert desired.held_models() == {"dup"}


def test_load_dir_invalid_file_claims_its_name(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", MINIMAL.format(name="m") + "  bogus: 1\n")
    _write(tmp_path / "b.yaml", MINIMAL.format(name="m"))
    desired = load_dir(tmp_path)
    assert desired.models == {}
    assert [e.field for e in desired.errors] == ["spec.bogus", "metadata.name"]
    assert desired.held_models() == {"m"}


def test_load_dir_reads_through_a_symlinked_directory(tmp_path: Path) -> None:
    real = tmp_path / "rev-1f2e3d"
    _write(real / "desired" / "m.yaml", MINIMAL.format(name="m"))
    link = tmp_path / "current"
    link.symlink_to(real)
    desired = load_dir(link / "desired")
    assert desired.errors == ()
    spec = desired.models["m"]
    # paths stay under the path given, not the symlink's target
    assert spec.source == str(link / "desired" / "model.onnx")
    assert spec.file == str(link / "desired" / "m.yaml")


def test_load_dir_missing_directory(tmp_path: Path) -> None:
    desired = load_dir(tmp_path / "nope")
    assert desired.models == {}
    assert len(desired.errors) == 1
    err = desired.errors[0]
    assert (err.file, err.model) == (str(tmp_path / "nope"), None)
    assert "cannot read directory" in err.message


def test_schema_is_closed_at_every_object_level() -> None:
    from jsonschema import Draft202012Validator

    schema_file = Path(__file__).resolve().parents[2] / "schemas" / "model-deployment.v1.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)

    def walk(node, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, where
                for name, sub in node["properties"].items():
                    assert sub.get("description"), f"{where}.{name}"
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(schema, "#")


_FRAGMENTS = [
    *FULL.splitlines(keepends=True),
    *["- ", "&a ", "*a", "<<: ", "{", "}", "[", "]", ": ", "\n", "  ", "? ", "---\n", "'", '"'],
    *["\t", "#", "|\n", "!!set ", "!!binary ", "!!int ", "~", ".nan", "0x", "\u2028", "\ufeff"],
    "2024-13-45",
    "9" * 30,
]
_FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _never_raises(tmp_path: Path, content: bytes) -> None:
    result = load_file(_write(tmp_path / "f.yaml", content), "f.yaml")
    assert isinstance(result, (ModelSpec, LoadError))


@_FAST
@given(content=st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(tmp_path: Path, content: bytes) -> None:
    _never_raises(tmp_path, content)


@_FAST
@given(parts=st.lists(st.sampled_from(_FRAGMENTS) | st.text(max_size=8), max_size=40))
def test_yamlish_text_never_raises(tmp_path: Path, parts: list[str]) -> None:
    _never_raises(tmp_path, "".join(parts).encode("utf-8", "surrogatepass"))


def test_an_update_window_is_read_and_a_bad_time_zone_named_at_its_line(tmp_path: Path) -> None:
    text = MINIMAL.format(name="m") + '  rollout:\n    window: "02:00-04:00"\n'
    spec = load_file(_write(tmp_path / "m.yaml", text))
    assert isinstance(spec, ModelSpec), spec
    assert spec.rollout.window is not None and spec.rollout.window.text == "02:00-04:00"
    plain = load_file(_write(tmp_path / "p.yaml", MINIMAL.format(name="m")))
    assert isinstance(plain, ModelSpec) and plain.digest == spec.digest  # a window is not "what"
    bad = MINIMAL.format(name="m") + (
        "  rollout:\n    window:\n      hours: 22:00-02:00\n      timezone: Nowhere/Atlantis\n"
    )
    err = load_file(_write(tmp_path / "b.yaml", bad), "desired/b.yaml")
    assert isinstance(err, LoadError) and err.field == "spec.rollout.window.timezone", err
    assert "Nowhere/Atlantis" in err.message
    err = load_file(
        _write(tmp_path / "c.yaml", MINIMAL.format(name="m") + "  rollout:\n    window: 2-4\n")
    )
    assert isinstance(err, LoadError)
