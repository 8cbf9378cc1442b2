"""validate_model(): hostile ONNX files are refused with a stable reason before anything loads them.

Each model is built here with onnx.helper, small enough to read in the test: external data that
leaves the package, custom operator domains (also hidden in subgraphs and functions), opsets out
of range, malformed protobuf, oversize files. The end-to-end test deploys two of them to the
real daemon and checks that it refuses both and never stops serving v1.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from reconciler.core.errors import IntegrityError
from reconciler.trust.signing import onnx_interface, publish
from reconciler.verify.model import verify
from reconciler.verify.structure import ALWAYS_ALLOWED_DOMAINS, ValidatedModel, validate_model
from tests.support.e2e import VersionWatch, select, wait_records, wait_served
from tests.support.kit import Kit
from tests.support.units import model_path, spec_from_doc

WEIGHTS = np.arange(4, dtype=np.float32).reshape(2, 2)


# -- building models -------------------------------------------------------------------------


def value(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [2, 2])


def make(
    nodes: list[onnx.NodeProto] | None = None,
    initializers: list[onnx.TensorProto] | None = None,
    opsets: tuple[tuple[str, int], ...] = (("", 17),),
    functions: list[onnx.FunctionProto] | None = None,
) -> onnx.ModelProto:
    """y = x + w by default; `nodes` replace the Add, `initializers` replace w."""
    graph = helper.make_graph(
        nodes if nodes is not None else [helper.make_node("Add", ["x", "w"], ["y"], name="add")],
        "g",
        [value("x")],
        [value("y")],
        initializers if initializers is not None else [numpy_helper.from_array(WEIGHTS, "w")],
    )
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
        functions=functions or [],
        ir_version=8,
    )


def external(
    location: str, name: str = "w", data_location: int = TensorProto.EXTERNAL, **keys: str
) -> onnx.TensorProto:
    """The weights tensor, stored outside the model at `location`."""
    t = numpy_helper.from_array(WEIGHTS, name)
    t.ClearField("raw_data")
    t.data_location = data_location  # type: ignore[assignment]
    for key, val in {"location": location, "offset": "0", "length": "16", **keys}.items():
        entry = t.external_data.add()
        entry.key, entry.value = key, val
    return t


def const_node(tensor: onnx.TensorProto, out: str = "w") -> onnx.NodeProto:
    return helper.make_node("Constant", [], [out], value=tensor, name=f"const-{out}")


def if_node(then_nodes: list[onnx.NodeProto], else_nodes: list[onnx.NodeProto]) -> onnx.NodeProto:
    """y = If(cond) with both branches producing `y` from the outer `x`."""
    branch = lambda nodes, name: helper.make_graph(nodes, name, [], [value("y")])  # noqa: E731
    return helper.make_node(
        "If",
        ["cond"],
        ["y"],
        name="branch",
        then_branch=branch(then_nodes, "then"),
        else_branch=branch(else_nodes, "else"),
    )


def with_cond(nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    cond = numpy_helper.from_array(np.array(True), "c")
    return [helper.make_node("Constant", [], ["cond"], value=cond, name="cond"), *nodes]


@pytest.fixture
def pkg(tmp_path: Path) -> Path:
    """A package directory with 16 bytes of weights beside where the model goes."""
    d = tmp_path / "pkg"
    d.mkdir()
    (d / "weights.bin").write_bytes(WEIGHTS.tobytes())
    (d / "sub").mkdir()
    (d / "sub" / "weights.bin").write_bytes(WEIGHTS.tobytes())
    return d


def save(model: onnx.ModelProto, directory: Path, name: str = "model.onnx") -> Path:
    path = directory / name
    path.write_bytes(model.SerializeToString())
    return path


def refused(path: Path, reason: str, *fragments: str, **kwargs: Any) -> IntegrityError:
    kwargs.setdefault("package_dir", path.parent)
    with pytest.raises(IntegrityError) as info:
        validate_model(path, **kwargs)
    err = info.value
    assert err.reason == reason, str(err)
    assert err.terminal
    for fragment in fragments:
        assert fragment in str(err), (fragment, str(err))
    return err


# -- good models pass ------------------------------------------------------------------------


def test_plain_model_passes(pkg: Path) -> None:
    report = validate_model(save(make(), pkg), package_dir=None)
    assert isinstance(report, ValidatedModel)
    assert report.opsets == {"": 17}
    assert report.external_data == ()
    assert report.model.graph.node[0].op_type == "Add"


def test_kit_v1_passes(kit: Kit) -> None:
    path = model_path(kit, "1")
    report = validate_model(path, package_dir=None)
    assert report.total_bytes == path.stat().st_size
    assert report.opsets[""] == 17


def test_relative_external_data_inside_the_package_passes(pkg: Path) -> None:
    path = save(make(initializers=[external("weights.bin")]), pkg)
    report = validate_model(path, package_dir=pkg)
    assert report.external_data == ((pkg / "weights.bin").resolve(),)
    assert report.total_bytes == path.stat().st_size + 16
    nested = save(make(initializers=[external("./sub/weights.bin")]), pkg, "nested.onnx")
    assert validate_model(nested, package_dir=pkg).external_data == (
        (pkg / "sub" / "weights.bin").resolve(),
    )


def test_the_builtin_domains_are_allowed(pkg: Path) -> None:
    assert {"", "ai.onnx.ml", "com.microsoft"} == ALWAYS_ALLOWED_DOMAINS
    ms = make(
        [helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft")],
        opsets=(("", 17), ("com.microsoft", 1)),
    )
    ml = make(
        [helper.make_node("Normalizer", ["x"], ["y"], domain="ai.onnx.ml", norm="MAX")],
        opsets=(("ai.onnx", 17), ("ai.onnx.ml", 3)),
    )
    validate_model(save(ms, pkg, "ms.onnx"), package_dir=None)
    validate_model(save(ml, pkg, "ml.onnx"), package_dir=None)


def test_model_local_functions_in_their_own_domain_are_allowed(pkg: Path) -> None:
    """Exporters (torch.onnx dynamo) put model-local functions in domains like
    pkg.onnxscript.torch_lib; those resolve inside the model and are not custom ops."""
    fn = helper.make_function(
        "pkg.local", "MyRelu", ["a"], ["b"], [helper.make_node("Relu", ["a"], ["b"])],
        [helper.make_opsetid("", 17)],
    )  # fmt: skip
    model = make(
        [helper.make_node("MyRelu", ["x"], ["y"], domain="pkg.local")],
        opsets=(("", 17), ("pkg.local", 1)),
        functions=[fn],
    )
    validate_model(save(model, pkg), package_dir=None)


# -- hostile: external data ------------------------------------------------------------------

ESCAPES: dict[str, tuple[str, str]] = {
    # case: (location, fragment of the message)
    "dot-dot": ("../../etc/passwd", "'..' component"),
    "dot-dot-after-a-dir": ("sub/../../etc/passwd", "'..' component"),
    "absolute": ("/etc/passwd", "absolute path"),
    "backslash-dot-dot": ("..\\..\\etc\\passwd", "backslash"),
    "windows-drive": ("C:/Windows/win.ini", "drive letter"),
    "unc-path": ("\\\\server\\share\\w.bin", "backslash"),
    "nul-truncation": ("weights.bin\x00/../../etc/passwd", "NUL"),
    "ort-memory-address": ("*/_ORT_MEM_ADDR_/*", "memory address"),
}


@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_external_data_outside_the_package_is_refused(pkg: Path, case: str) -> None:
    location, fragment = ESCAPES[case]
    path = save(make(initializers=[external(location)]), pkg)
    refused(path, "external-data-escape", "tensor 'w'", fragment)


def test_symlink_inside_the_package_pointing_outside_is_refused(pkg: Path) -> None:
    (pkg / "link.bin").symlink_to("/etc/passwd")
    path = save(make(initializers=[external("link.bin")]), pkg)
    refused(path, "external-data-escape", "tensor 'w'", "'link.bin'", "symbolic link")


def test_symlinked_directory_pointing_outside_is_refused(pkg: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.bin").write_bytes(b"s" * 16)
    (pkg / "data").symlink_to(outside)
    path = save(make(initializers=[external("data/secret.bin")]), pkg)
    refused(path, "external-data-escape", "symbolic link")


def test_symlink_even_inside_the_package_is_refused(pkg: Path) -> None:
    """Its target could be swapped after the check, so no symlink is trusted."""
    (pkg / "alias.bin").symlink_to(pkg / "weights.bin")
    path = save(make(initializers=[external("alias.bin")]), pkg)
    refused(path, "external-data-escape", "symbolic link")


def test_model_deeper_than_the_package_cannot_reach_a_sibling_outside(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "model").mkdir(parents=True)
    (tmp_path / "other.bin").write_bytes(b"x" * 16)
    path = save(make(initializers=[external("../../other.bin")]), pkg / "model")
    refused(path, "external-data-escape", package_dir=pkg)


def test_any_external_data_is_refused_for_a_single_file_model(pkg: Path) -> None:
    path = save(make(initializers=[external("weights.bin")]), pkg)
    refused(path, "external-data-escape", "not allowed here", package_dir=None)


def test_external_entries_count_even_without_the_external_flag(pkg: Path) -> None:
    tensor = external("/etc/passwd", data_location=TensorProto.DEFAULT)
    refused(save(make(initializers=[tensor]), pkg), "external-data-escape", "absolute")


def test_unknown_external_data_keys_are_refused(pkg: Path) -> None:
    tensor = external("weights.bin", basepath="/etc")
    refused(save(make(initializers=[tensor]), pkg), "external-data-escape", "'basepath'")


def test_external_tensor_hidden_in_a_constant_node(pkg: Path) -> None:
    nodes = [const_node(external("/etc/passwd", "k")), helper.make_node("Add", ["x", "w"], ["y"])]
    refused(save(make(nodes, initializers=[]), pkg), "external-data-escape", "tensor 'k'")


def test_external_tensor_hidden_in_an_if_branch(pkg: Path) -> None:
    hidden = [const_node(external("../../etc/shadow", "k"), "k"), helper.make_node("Add", ["x", "k"], ["y"])]  # fmt: skip
    plain = [helper.make_node("Identity", ["x"], ["y"])]
    model = make(with_cond([if_node(plain, hidden)]), initializers=[])
    refused(save(model, pkg), "external-data-escape", "tensor 'k'", "subgraph 'else'")


def test_external_tensor_hidden_in_a_function_body(pkg: Path) -> None:
    fn = helper.make_function(
        "pkg.local", "Leak", ["a"], ["b"],
        [const_node(external("/etc/passwd", "k"), "k"), helper.make_node("Add", ["a", "k"], ["b"])],
        [helper.make_opsetid("", 17)],
    )  # fmt: skip
    model = make(
        [helper.make_node("Leak", ["x"], ["y"], domain="pkg.local")],
        initializers=[],
        opsets=(("", 17), ("pkg.local", 1)),
        functions=[fn],
    )
    refused(save(model, pkg), "external-data-escape", "function pkg.local:Leak")


def test_external_sparse_initializer(pkg: Path) -> None:
    model = make()
    sparse = model.graph.sparse_initializer.add()
    sparse.values.CopyFrom(external("/etc/passwd", "sv"))
    sparse.indices.CopyFrom(numpy_helper.from_array(np.array([0], np.int64), "si"))
    sparse.dims.extend([4])
    refused(save(model, pkg), "external-data-escape", "tensor 'sv'")


def test_external_range_past_the_file_is_invalid(pkg: Path) -> None:
    tensor = external("weights.bin", offset="8", length="16")
    refused(save(make(initializers=[tensor]), pkg), "onnx-invalid", "do not lie within")


def test_a_location_too_long_to_check_is_refused(pkg: Path) -> None:
    path = save(make(initializers=[external("a" * 300)]), pkg)
    refused(path, "external-data-escape", "cannot be checked")


def test_a_location_that_is_not_utf8_is_invalid(pkg: Path) -> None:
    raw = make(initializers=[external("weights.bin")]).SerializeToString()
    path = pkg / "model.onnx"
    path.write_bytes(raw.replace(b"weights.bin", b"\xffeights.bin"))
    refused(path, "onnx-invalid", "not UTF-8")


@pytest.mark.parametrize("offset", [" 0", "-0", "\u0660", "1_0", "0x0"])
def test_offsets_must_be_plain_decimal(pkg: Path, offset: str) -> None:
    path = save(make(initializers=[external("weights.bin", offset=offset)]), pkg)
    refused(path, "onnx-invalid", "decimal integers")


def test_missing_external_file_is_invalid(pkg: Path) -> None:
    refused(save(make(initializers=[external("nope.bin")]), pkg), "onnx-invalid", "missing")


# -- hostile: operator domains ---------------------------------------------------------------


def evil(name: str = "steal") -> onnx.NodeProto:
    return helper.make_node("Exfiltrate", ["x"], ["y"], domain="com.evil", name=name)


def test_custom_op_domain_is_refused_and_named(pkg: Path) -> None:
    path = save(make([evil()], opsets=(("", 17), ("com.evil", 1))), pkg)
    refused(path, "custom-op-domain", "'com.evil'", "Exfiltrate", "'steal'")
    # ... unless the trust policy allows it
    report = validate_model(path, package_dir=None, allowed_domains=["com.evil"])
    assert report.opsets == {"": 17, "com.evil": 1}


def test_custom_op_hidden_in_a_subgraph_is_refused(pkg: Path) -> None:
    plain = [helper.make_node("Identity", ["x"], ["y"])]
    model = make(with_cond([if_node(plain, [evil("deep")])]), opsets=(("", 17), ("com.evil", 1)))
    refused(save(model, pkg), "custom-op-domain", "'com.evil'", "subgraph 'else'")


def test_custom_op_in_a_nested_subgraph_is_refused(pkg: Path) -> None:
    plain = [helper.make_node("Identity", ["x"], ["y"])]
    inner = if_node(plain, [evil("deeper")])
    model = make(
        with_cond([if_node([inner], plain)]),
        opsets=(("", 17), ("com.evil", 1)),
    )
    refused(save(model, pkg), "custom-op-domain", "'deeper'", "subgraph 'then'")


def test_custom_op_inside_a_local_function_is_refused(pkg: Path) -> None:
    fn = helper.make_function(
        "pkg.local", "Wrap", ["x"], ["y"], [evil("in-fn")],
        [helper.make_opsetid("", 17), helper.make_opsetid("com.evil", 1)],
    )  # fmt: skip
    model = make(
        [helper.make_node("Wrap", ["x"], ["y"], domain="pkg.local")],
        opsets=(("", 17), ("pkg.local", 1)),
        functions=[fn],
    )
    refused(save(model, pkg), "custom-op-domain", "'com.evil'", "function pkg.local:Wrap")


def test_custom_domain_declared_but_unused_is_refused(pkg: Path) -> None:
    path = save(make(opsets=(("", 17), ("com.evil", 1))), pkg)
    refused(path, "custom-op-domain", "'com.evil'", "used by no node")


def test_node_in_an_undeclared_domain_is_invalid(pkg: Path) -> None:
    node = helper.make_node("Normalizer", ["x"], ["y"], domain="ai.onnx.ml", norm="MAX")
    path = save(make([node]), pkg)
    refused(path, "onnx-invalid", "'ai.onnx.ml'", "does not declare")
    allowed_but_undeclared = save(make([evil()]), pkg, "evil.onnx")
    refused(allowed_but_undeclared, "onnx-invalid", allowed_domains=["com.evil"])


def test_a_domain_that_is_not_utf8_is_invalid(pkg: Path) -> None:
    raw = make([evil()], opsets=(("", 17), ("com.evil", 1))).SerializeToString()
    path = pkg / "model.onnx"
    path.write_bytes(raw.replace(b"com.evil", b"com.\xffvil"))
    refused(path, "onnx-invalid", "not UTF-8")


def test_duplicate_opset_import_is_invalid(pkg: Path) -> None:
    path = save(make(opsets=(("", 17), ("ai.onnx", 13))), pkg)
    refused(path, "onnx-invalid", "twice")


# -- hostile: opsets -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opsets", "kwargs", "fragment"),
    [
        ((("", 99),), {}, "opset 99"),
        ((("", 6),), {}, "opset 6"),
        ((("", 17),), {"max_opset": 13}, "7 to 13"),
        ((("", 17), ("ai.onnx.ml", 99)), {}, "ai.onnx.ml opset 99"),
    ],
    ids=["opset-99", "opset-6", "above-device-max", "ml-opset-99"],
)
def test_opset_out_of_range(
    pkg: Path, opsets: tuple[tuple[str, int], ...], kwargs: dict[str, Any], fragment: str
) -> None:
    refused(save(make(opsets=opsets), pkg), "opset-unsupported", fragment, **kwargs)


# -- hostile: malformed bytes, size ----------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_are_invalid(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(np.random.default_rng(seed).bytes(4096))
    refused(path, "onnx-invalid", "not a valid ONNX model")


def test_empty_file_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"")
    refused(path, "onnx-invalid")


def test_truncated_model_is_invalid(kit: Kit, tmp_path: Path) -> None:
    cut = tmp_path / "model.onnx"
    cut.write_bytes(model_path(kit, "1").read_bytes()[:5000])
    refused(cut, "onnx-invalid")


def test_missing_file_and_directory_are_invalid(tmp_path: Path) -> None:
    refused(tmp_path / "absent.onnx", "onnx-invalid", "cannot read")
    refused(tmp_path, "onnx-invalid")


def test_valid_protobuf_that_fails_the_checker_is_invalid(pkg: Path) -> None:
    dangling = make([helper.make_node("Add", ["x", "nowhere"], ["y"])])
    refused(save(dangling, pkg), "onnx-invalid", "nowhere")


def test_an_impossible_reshape_fails_the_full_check(pkg: Path) -> None:
    # 4 elements into a 3x3: a shape-inference error, found only by full_check
    reshape = helper.make_node("Reshape", ["x", "s"], ["y"])
    bad_shape = numpy_helper.from_array(np.array([3, 3], np.int64), "s")
    refused(
        save(make([reshape], initializers=[bad_shape]), pkg), "onnx-invalid", "ShapeInferenceError"
    )


def test_file_over_the_limit_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\xff" * 2048)  # not even protobuf: the size check comes first
    refused(path, "model-too-large", "2048 bytes", max_bytes=1024)


def test_external_data_counts_towards_the_size_limit(pkg: Path) -> None:
    path = save(make(initializers=[external("weights.bin")]), pkg)
    limit = path.stat().st_size + 8  # the model fits, the model plus its 16 bytes does not
    refused(path, "model-too-large", "external data", max_bytes=limit)


_FAST = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_FAST
@given(data=st.data())
def test_any_byte_edit_of_a_model_is_accepted_or_refused_never_crashes(
    tmp_path: Path, data: st.DataObject
) -> None:
    """Flip, cut or splice bytes of a small valid model: only IntegrityError ever escapes."""
    raw = bytearray(make(initializers=[external("weights.bin")]).SerializeToString())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        edit = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if edit == "flip":
            raw[at] ^= data.draw(st.integers(1, 255))
        elif edit == "cut":
            del raw[at : at + data.draw(st.integers(1, 8))]
        else:
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        if not raw:
            break
    (tmp_path / "weights.bin").write_bytes(WEIGHTS.tobytes())
    path = tmp_path / "model.onnx"
    path.write_bytes(bytes(raw))
    try:
        validate_model(path, package_dir=tmp_path)
    except IntegrityError as e:
        assert e.reason in {
            "onnx-invalid", "external-data-escape", "custom-op-domain", "opset-unsupported",
        }, e  # fmt: skip


# -- through verify() ------------------------------------------------------------------------


def _pinned(spec: Any, path: Path) -> Any:
    return dataclasses.replace(spec, sha256=hashlib.sha256(path.read_bytes()).hexdigest())


def poisoned_v1(kit: Kit, out: Path, poison: Callable[[onnx.ModelProto], None]) -> Path:
    """Kit v1 with one change: same interface, so only validation can refuse it."""
    model = onnx.load(str(model_path(kit, "1")))
    poison(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(model.SerializeToString())
    return out


def custom_domain(model: onnx.ModelProto) -> None:
    node = model.graph.node[0]
    node.domain = "com.evil"
    model.opset_import.append(helper.make_opsetid("com.evil", 1))


def escaping_weights(model: onnx.ModelProto) -> None:
    init = model.graph.initializer[0]
    n = len(init.raw_data) or 4 * int(np.prod(init.dims))
    init.ClearField("raw_data")
    init.ClearField("float_data")
    init.data_location = TensorProto.EXTERNAL
    for key, val in {"location": "../../etc/passwd", "offset": "0", "length": str(n)}.items():
        entry = init.external_data.add()
        entry.key, entry.value = key, val


def test_verify_refuses_a_custom_domain_and_passes_the_policy(kit: Kit, tmp_path: Path) -> None:
    spec = spec_from_doc(kit.doc("1"), tmp_path / "desired")
    path = poisoned_v1(kit, tmp_path / "bad" / "model.onnx", custom_domain)
    with pytest.raises(IntegrityError) as info:
        verify(_pinned(spec, path), path)
    assert info.value.reason == "custom-op-domain"
    assert "verify classifier v1" in str(info.value) and "'com.evil'" in str(info.value)
    # the trust policy may allow it; the checker and the contract still run
    verified = verify(_pinned(spec, path), path, allowed_domains=["com.evil"])
    assert verified.outputs[0].name == "logits"
    with pytest.raises(IntegrityError) as small:
        verify(_pinned(spec, path), path, max_bytes=1000)
    assert small.value.reason == "model-too-large"


def test_verify_refuses_external_data_in_a_stored_blob(kit: Kit, tmp_path: Path) -> None:
    spec = spec_from_doc(kit.doc("1"), tmp_path / "desired")
    path = poisoned_v1(kit, tmp_path / "bad" / "model.onnx", escaping_weights)
    with pytest.raises(IntegrityError) as info:
        verify(_pinned(spec, path), path)
    assert info.value.reason == "external-data-escape"
    assert "../../etc/passwd" in str(info.value)


def test_verify_kit_v4_is_a_contract_break(kit: Kit, tmp_path: Path) -> None:
    spec = spec_from_doc(kit.doc("1"), tmp_path / "desired")
    v4 = model_path(kit, "4")
    validate_model(v4, package_dir=None)  # structurally fine ...
    with pytest.raises(IntegrityError) as info:
        verify(_pinned(spec, v4), v4)  # ... but it drops v1's `logits` output
    assert info.value.reason == "contract-break"


# -- end to end ------------------------------------------------------------------------------


def test_daemon_refuses_hostile_models_and_keeps_serving_v1(
    kit: Kit, daemon, tmp_path: Path
) -> None:
    """Both models are validly signed by the kit's publisher (the device trusts that key), so
    only validation stands between them and ONNX Runtime: a compromised publisher or build."""
    d = daemon()
    kit.write(d.desired, "1")
    d.start(resync=0.5)
    wait_served(d, "1")
    bad = {
        "5": (poisoned_v1(kit, tmp_path / "bad5" / "model.onnx", custom_domain), "custom-op-domain"),
        "6": (poisoned_v1(kit, tmp_path / "bad6" / "model.onnx", escaping_weights), "external-data-escape"),
    }  # fmt: skip
    with VersionWatch(d) as watch:
        for version, (model, reason) in bad.items():
            # signed with the interface of clean v1: publish's own checker would refuse the
            # external-data model, an attacker holding the key signs with their own tooling
            package = publish(
                model, "classifier", version, kit.public_key.with_suffix(".key"),
                tmp_path / "registry", interface=onnx_interface(model_path(kit, "1")),
            )  # fmt: skip
            change = {
                "version": version,
                "source": str(package / "model.onnx"),
                "manifest": str(package / "manifest.json"),
                "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
            }

            def point_at_bad(doc: dict[str, Any], change: dict[str, str] = change) -> None:
                doc["spec"]["model"].update(change)

            kit.write(d.desired, "1", mutate=point_at_bad)
            [failed] = wait_records(
                d, f"verify of v{version} failed", step="verify", phase="failed", to_version=version
            )
            assert failed["detail"]["reason"] == reason, failed
            assert failed["detail"]["terminal"] is True
            assert {"5": "'com.evil'", "6": "'../../etc/passwd'"}[version] in failed["detail"][
                "message"
            ]
    watch.assert_only("1")
    records = d.journal_records()
    for version in bad:
        assert not select(records, step="warm", to_version=version), "a refused model was loaded"
    out = d.cli("journal", "--verify")
    assert out.returncode == 0, out.stdout + out.stderr
