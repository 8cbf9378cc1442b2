"""Build the example classifier in four versions, plus everything needed to deploy them.

Versions 1 and 2 are good upgrades of each other; 3 and 4 are deliberately bad so the daemon's
safety net can be demonstrated: 3 outputs NaN (health check must reject it), 4 breaks the
interface contract (verify must reject it). Every byte is a pure function of the version and the
library versions, so sha256 pins in the YAMLs stay valid when the script is rerun.

    python examples/make_models.py [--out examples/registry] [--desired desired] [--force]

Each version is published as a signed package (model.onnx, manifest.json, manifest.json.sig)
with the example publisher key in examples/keys/ (made on first run, never committed).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

EXAMPLES = Path(__file__).resolve().parent  # where the classifier.v*.yaml files live
REPO = EXAMPLES.parent
NAME = "classifier"
CONV = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}  # halves H and W
BATCH = (2, 3, 224, 224)  # golden inputs: small enough to keep in git, >1 to exercise batching


class Variant(NamedTuple):  # not a dataclass: importable via spec_from_file_location
    seed: int
    comment: str
    output: str = "logits"
    classes: int = 1000
    nan_bias: bool = False
    golden_from: str | None = None  # take golden expected outputs from this version instead


VERSIONS = {
    "1": Variant(1, "version 1: the baseline classifier (weights from seed 1)"),
    "2": Variant(2, "version 2: new weights (seed 2), same interface - a normal, good upgrade"),
    # v3 is v2 with a poisoned bias: the graph is valid and the interface intact, so only the
    # health check (golden outputs of v2, no-NaN rule) can catch it.
    "3": Variant(
        2,
        "version 3: outputs NaN; the health check rejects it and version 2 keeps serving",
        nan_bias=True,
        golden_from="2",
    ),
    "4": Variant(
        4,
        "version 4: breaks the interface (output 'scores' [N,10], not 'logits' [N,1000]); "
        "verify rejects it against spec.interface, so it is never loaded",
        output="scores",
        classes=10,
    ),
}


def build_model(version: str, v: Variant) -> onnx.ModelProto:
    rng = np.random.default_rng(v.seed)

    def he(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        # He init keeps activations O(1) through the ReLUs, so logits are neither 0 nor huge and
        # an atol of 1e-4 is a meaningful check rather than a trivially passing one.
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))

    inits, nodes, x = [], [], "input"
    for i, (cin, cout) in enumerate([(3, 16), (16, 32), (32, 64), (64, 128)]):
        w, b = f"conv{i}.weight", f"conv{i}.bias"
        inits.append(numpy_helper.from_array(he((cout, cin, 3, 3), cin * 9), w))
        inits.append(numpy_helper.from_array(he((cout,), cin * 9) * 0.1, b))
        nodes.append(helper.make_node("Conv", [x, w, b], [f"conv{i}"], name=f"conv{i}", **CONV))
        nodes.append(helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"], name=f"relu{i}"))
        x = f"relu{i}"
    fc_w = he((v.classes, 128), 128)
    fc_b = np.full(v.classes, np.nan, np.float32) if v.nan_bias else he((v.classes,), 128) * 0.1
    inits += [numpy_helper.from_array(fc_w, "fc.weight"), numpy_helper.from_array(fc_b, "fc.bias")]
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], [v.output], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        NAME,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info(v.output, TensorProto.FLOAT, ["N", v.classes])],
        initializer=inits,
    )
    # ir_version is pinned because make_model's default follows the installed onnx release,
    # which would change the bytes (and the sha256) on an onnx upgrade.
    return helper.make_model(
        graph,
        producer_name="hotswap-examples",
        opset_imports=[helper.make_opsetid("", 17)],
        ir_version=8,
        model_version=int(version),
        doc_string=v.comment,
    )


def reference_outputs(model_bytes: bytes, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    # No graph optimisations and one thread: the plain, unfused kernels are the reference the
    # daemon's (optimised) sessions are compared against within atol.
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, inputs), strict=True))


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    # Same layout as np.savez (one NAME.npy per key, loadable with np.load), but np.savez stamps
    # each zip entry with the current time, which would change the sha256 on every run.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w") as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def write_atomic(path: Path, data: bytes) -> bool:
    """Replace `path` with `data` so readers (the daemon's watcher) never see a partial file.

    Returns False without touching the file when it already holds these bytes, so a rerun
    does not bump mtimes and wake file watchers for nothing."""
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX only)
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return True


def _rel(target: Path, yaml_dir: Path) -> str:
    # Always go up to yaml_dir's parent first ("../examples/registry/..."), so the text means the
    # same from any sibling directory: a v*.yaml can be cp'd from examples/ into desired/ as-is.
    s = "../" + Path(os.path.relpath(target.resolve(), yaml_dir.resolve().parent)).as_posix()
    return s if re.fullmatch(r"[A-Za-z0-9_./-]+", s) else json.dumps(s)  # quote odd paths


def render_yaml(version: str, model: Path, golden: Path, sha: str, yaml_dir: Path) -> bytes:
    comment = VERSIONS[version].comment
    # The interface is the contract every version must keep, so it is the same in all four
    # files - including v4's, whose model does not honour it.
    text = f"""\
# {comment}
# Generated by examples/make_models.py; rerun it instead of editing (sha256 pins the bytes).
apiVersion: hotswap/v1
kind: ModelDeployment
metadata:
  name: {NAME}
spec:
  model:
    version: "{version}"
    source: {_rel(model, yaml_dir)}
    sha256: "{sha}"
    manifest: {_rel(model.parent / "manifest.json", yaml_dir)}
  runtime:
    backend: onnxruntime
    precision: fp32
    shapes:
      input: {{min: [1, 3, 224, 224], opt: [1, 3, 224, 224], max: [8, 3, 224, 224]}}
  interface:
    inputs: [{{name: input, datatype: FP32, shape: [-1, 3, 224, 224]}}]
    outputs: [{{name: logits, datatype: FP32, shape: [-1, 1000]}}]
  health:
    warmup: {{iterations: 5}}
    golden: {_rel(golden, yaml_dir)}
    atol: 1.0e-4
    max_latency_ms: 250
  rollout:
    strategy: immediate
  retention:
    keep_standby: true
    keep_versions: 3
"""
    return text.encode()


def _show(path: Path, data: bytes, note: str) -> None:
    try:
        shown = path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        shown = path
    sha = hashlib.sha256(data).hexdigest()[:12]
    print(f"{note:<9} {sha}  {shown}  ({len(data):,} bytes)")


def signing_key(key: Path) -> Path:
    """The publisher's key: made on first use (a real registry's key lives off the device)."""
    from reconciler.signing import generate_keypair

    if not key.exists():
        _, pub, keyid = generate_keypair(key.parent)
        print(f"new signing key {keyid}: {key} (public half: {pub})")
    return key


def build(
    out: Path,
    desired: Path | None,
    force: bool = False,
    *,
    examples: Path | None = None,
    key: Path | None = None,
) -> dict[str, Path]:
    """Write signed packages, goldens and YAMLs; return {version: model path}.

    `examples` is where the classifier.v*.yaml files go: main() passes the repo's examples/;
    it defaults to `out` so an in-process call (a test) writes nothing outside out and desired.
    `key` signs the packages (default `<out>/../keys/hotswap.key`, made if missing); a device
    trusts them once its owner copies `hotswap.pub` into the device's trust directory."""
    from reconciler.signing import publish

    examples = out if examples is None else examples
    key = signing_key(key or out.parent / "keys" / "hotswap.key")
    golden_inputs = {"input": np.random.default_rng(1234).standard_normal(BATCH, np.float32)}
    models, model_bytes, pins = {}, {}, {}
    for version, v in VERSIONS.items():
        vdir = out / NAME / version
        data = build_model(version, v).SerializeToString()
        model_bytes[version] = data
        src = data if v.golden_from is None else model_bytes[v.golden_from]
        golden = npz_bytes({**golden_inputs, **reference_outputs(src, golden_inputs)})
        for path, blob in ((vdir / "model.onnx", data), (vdir / "golden.npz", golden)):
            _show(path, blob, "wrote" if write_atomic(path, blob) else "unchanged")
        models[version] = vdir / "model.onnx"
        # Signed even when bad: a signature says who published it, not that it works.
        publish(models[version], NAME, version, key, out)
        pins[version] = (models[version], vdir / "golden.npz", hashlib.sha256(data).hexdigest())
        suffix = {"3": "-nan", "4": "-broken"}.get(version, "")
        path = examples / f"{NAME}.v{version}{suffix}.yaml"
        blob = render_yaml(version, *pins[version], examples)
        _show(path, blob, "wrote" if write_atomic(path, blob) else "unchanged")
    if desired is not None:
        # Rendered for desired/ itself: byte-identical to the v1 file when the two directories
        # are siblings, still correct when they are not. Never clobber a user's edits unless asked.
        path = desired / f"{NAME}.yaml"
        blob = render_yaml("1", *pins["1"], desired)
        if path.exists() and not force:
            _show(path, path.read_bytes(), "kept")
        else:
            _show(path, blob, "wrote" if write_atomic(path, blob) else "unchanged")
    return models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build the example ONNX classifier (versions 1-4: two good, one that outputs "
        "NaN, one that breaks the interface), golden inputs/outputs, and a ModelDeployment YAML "
        "per version in examples/. Output is byte-for-byte reproducible.",
        epilog="Then roll out v2 with: cp examples/classifier.v2.yaml desired/classifier.yaml",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=EXAMPLES / "registry",
        help="registry directory for <out>/classifier/<version>/{model.onnx,golden.npz} "
        "(default: examples/registry)",
    )
    parser.add_argument(
        "--desired",
        default=str(REPO / "desired"),
        help="desired-state directory that gets classifier.yaml (a copy of v1) if it has none; "
        "pass '' to skip (default: desired)",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite an existing <desired>/classifier.yaml"
    )
    args = parser.parse_args(argv)
    desired = Path(args.desired) if args.desired else None
    build(args.out, desired, args.force, examples=EXAMPLES)
    print("\nto roll out v2: cp examples/classifier.v2.yaml desired/classifier.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
