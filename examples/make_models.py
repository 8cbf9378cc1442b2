"""Build the example classifier in six versions, plus everything needed to deploy them.

Versions 1 and 2 are good upgrades of each other; 3 to 6 are deliberately bad so the daemon's
safety net can be demonstrated: 3 outputs NaN (health check must reject it), 4 breaks the
interface contract (verify must reject it). 5 and 6 pass every check before traffic and fail
only in production, so they are rolled out as canaries (their YAMLs have `strategy: canary`):

- 5 "flaky" answers exactly like v2, but a request fails with an ONNX Runtime error (HTTP 500
  from the server) when any of its batch rows has a first input element input[n,0,0,0] > 1.0:
  the golden inputs do not trip it, about 16% of standard-normal images do (the canary's
  error-rate gate);
- 6 "slow" answers exactly like v2 with several times its compute (the latency gate).

examples/classifier.v2-canary.yaml is v2 with the same canary rollout: a canary that passes.
Every byte is a pure function of the version and the library versions, so sha256 pins in the
YAMLs stay valid when the script is rerun.

    python examples/make_models.py [--out examples/registry] [--desired desired] [--force]

Each version is published as a package signed with OpenSSF model signing (model.onnx,
golden.npz, manifest.json and model.sig over all of them; `model_signing verify key` checks it
too) with the example publisher's ECDSA key in examples/keys/ (made on first run, never
committed).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import sys
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
# Editors with the YAML language server validate the generated files against this schema.
SCHEMA_ID = "https://hotswap.dev/schemas/model-deployment.v1.json"
CONV = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}  # halves H and W
BATCH = (2, 3, 224, 224)  # golden inputs: small enough to keep in git, >1 to exercise batching


class Variant(NamedTuple):  # not a dataclass: importable via spec_from_file_location
    seed: int
    comment: str
    output: str = "logits"
    classes: int = 1000
    nan_bias: bool = False
    golden_from: str | None = None  # take golden expected outputs from this version instead
    trap: str | None = None  # "flaky" | "slow": a side branch added to the logits, see build_model
    suffix: str = ""  # of the YAML's file name: classifier.v<version><suffix>.yaml
    canary: bool = False  # its YAML rolls it out as a canary (CANARY), not immediately


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
        suffix="-nan",
    ),
    "4": Variant(
        4,
        "version 4: breaks the interface (output 'scores' [N,10], not 'logits' [N,1000]); "
        "verify rejects it against spec.interface, so it is never loaded",
        output="scores",
        classes=10,
        suffix="-broken",
    ),
    # v5 and v6 are v2's weights with a side branch whose value is always 0 (so the logits are
    # v2's bit for bit): health checks on the golden inputs pass, production traffic does not.
    "5": Variant(
        2,
        "version 5: v2's outputs, but inference fails (HTTP 500) for each request whose "
        "input[n,0,0,0] > 1.0 (~16% of random inputs); passes the health check, the canary's "
        "error-rate gate reverts it",
        golden_from="2",
        trap="flaky",
        suffix="-flaky",
        canary=True,
    ),
    "6": Variant(
        2,
        "version 6: v2's outputs at several times v2's compute; passes the health check "
        "(max_latency_ms), the canary's p99 latency-ratio gate reverts it",
        golden_from="2",
        trap="slow",
        suffix="-slow",
        canary=True,
    ),
}

# The canary rollout of v5, v6 and classifier.v2-canary.yaml (DESIGN.md section 3): 20% of the
# requests, then 50%, 10 s each, judged by the gates; a crossed gate sends all traffic back.
IMMEDIATE = "  rollout:\n    strategy: immediate\n"
CANARY = """\
  rollout:
    strategy: canary
    steps: [{weight: 20, for: 10s}, {weight: 50, for: 10s}]
    gates: {max_error_rate: 0.02, max_p99_latency_ratio: 2.0, min_requests: 20}
    on_failure: revert
"""
V2_CANARY_COMMENT = (
    "version 2 rolled out as a canary (20% then 50% of the requests, 10 s each): a good "
    "upgrade passes every gate and is promoted"
)
FLAKY_THRESHOLD = 1.0  # v5 fails a row whose input[n,0,0,0] is above this
SLOW_MATMULS = 30  # v6's side branch: [588,256]x[256,256] MatMuls per image, ~10x v2's time


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
    fc_out = v.output if v.trap is None else "fc"
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], [fc_out], name="fc", transB=1),
    ]
    if v.trap is not None:
        # The branch computes a [N] vector of zeros from the input, so ONNX Runtime cannot fold
        # it away; adding it to the logits leaves them bit for bit as they are (x + 0 == x).
        trap_inits, trap_nodes = (_flaky_branch if v.trap == "flaky" else _slow_branch)()
        inits += trap_inits
        nodes += trap_nodes
        nodes += [
            helper.make_node("Unsqueeze", ["trap", "trap.axes"], ["trap_col"], name="trap_col"),
            helper.make_node("Add", [fc_out, "trap_col"], [v.output], name="trap_add"),
        ]
        inits.append(numpy_helper.from_array(np.array([1], np.int64), "trap.axes"))
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


def _flaky_branch() -> tuple[list[onnx.TensorProto], list[onnx.NodeProto]]:
    """v5: zeros[N], except that a row whose input[n,0,0,0] > FLAKY_THRESHOLD makes the run fail.

    The row's first element is compared with the threshold and the answer (0 or 1) times 1000
    indexes a 2-element table: index 1000 is out of bounds, and ONNX Runtime's Gather raises
    ("indices element out of data bounds") for the whole request - at inference time, never at
    load time, and only for such inputs."""
    inits = [
        numpy_helper.from_array(np.array([0, 0, 0], np.int64), "flaky.starts"),
        numpy_helper.from_array(np.array([1, 1, 1], np.int64), "flaky.ends"),
        numpy_helper.from_array(np.array([1, 2, 3], np.int64), "flaky.slice_axes"),
        numpy_helper.from_array(np.array([-1], np.int64), "flaky.flat"),
        numpy_helper.from_array(np.array(FLAKY_THRESHOLD, np.float32), "flaky.threshold"),
        numpy_helper.from_array(np.array(1000, np.int64), "flaky.stride"),
        numpy_helper.from_array(np.zeros(2, np.float32), "flaky.table"),
    ]
    nodes = [
        helper.make_node(
            "Slice",
            ["input", "flaky.starts", "flaky.ends", "flaky.slice_axes"],
            ["flaky_first"],
            name="flaky_first",
        ),  # [N,1,1,1]: input[:, :1, :1, :1]
        helper.make_node("Reshape", ["flaky_first", "flaky.flat"], ["flaky_x"], name="flaky_x"),
        helper.make_node("Greater", ["flaky_x", "flaky.threshold"], ["flaky_hot"], name="flaky_gt"),
        helper.make_node(
            "Cast", ["flaky_hot"], ["flaky_i"], name="flaky_cast", to=TensorProto.INT64
        ),
        helper.make_node("Mul", ["flaky_i", "flaky.stride"], ["flaky_idx"], name="flaky_idx"),
        helper.make_node("Gather", ["flaky.table", "flaky_idx"], ["trap"], name="flaky_gather"),
    ]
    return inits, nodes


def _slow_branch() -> tuple[list[onnx.TensorProto], list[onnx.NodeProto]]:
    """v6: zeros[N] that cost SLOW_MATMULS [588,256]x[256,256] MatMuls per image.

    The image is viewed as [N, 588, 256] (3*224*224 = 588*256) and clipped to [-1, 1] before
    every MatMul, so every value stays finite whatever the input (a NaN input is NaN in v2 too);
    the sum is multiplied by 0, which ONNX Runtime does not simplify away."""
    rng = np.random.default_rng(600)  # its own stream: the classifier's weights stay v2's
    scale = np.float32(1.0 / np.sqrt(256.0))
    inits = [
        numpy_helper.from_array(np.array([0, 588, 256], np.int64), "slow.shape"),
        numpy_helper.from_array(np.array(-1.0, np.float32), "slow.lo"),
        numpy_helper.from_array(np.array(1.0, np.float32), "slow.hi"),
        numpy_helper.from_array(np.array([1, 2], np.int64), "slow.sum_axes"),
        numpy_helper.from_array(np.array(0.0, np.float32), "slow.zero"),
    ]
    nodes = [helper.make_node("Reshape", ["input", "slow.shape"], ["slow_in"], name="slow_in")]
    x = "slow_in"
    for i in range(SLOW_MATMULS):
        w = f"slow.w{i}"
        inits.append(
            numpy_helper.from_array(rng.standard_normal((256, 256), np.float32) * scale, w)
        )
        nodes += [
            helper.make_node("Clip", [x, "slow.lo", "slow.hi"], [f"slow_c{i}"], name=f"slow_c{i}"),
            helper.make_node("MatMul", [f"slow_c{i}", w], [f"slow_m{i}"], name=f"slow_m{i}"),
        ]
        x = f"slow_m{i}"
    nodes += [
        helper.make_node("Clip", [x, "slow.lo", "slow.hi"], ["slow_out"], name="slow_out"),
        helper.make_node(
            "ReduceSum", ["slow_out", "slow.sum_axes"], ["slow_sum"], name="slow_sum", keepdims=0
        ),
        helper.make_node("Mul", ["slow_sum", "slow.zero"], ["trap"], name="slow_zero"),
    ]
    return inits, nodes


def reference_outputs(
    model_bytes: bytes, inputs: dict[str, np.ndarray], quiet: bool = False
) -> dict[str, np.ndarray]:
    # No graph optimisations and one thread: the plain, unfused kernels are the reference the
    # daemon's (optimised) sessions are compared against within atol.
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    if quiet:  # an expected failure: the exception says it, ORT's own error log need not
        opts.log_severity_level = 4
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
    from reconciler.state.atomic import atomic_write

    if path.is_file() and path.read_bytes() == data:
        return False
    atomic_write(path, data)
    return True


def _rel(target: Path, yaml_dir: Path) -> str:
    # Always go up to yaml_dir's parent first ("../examples/registry/..."), so the text means the
    # same from any sibling directory: a v*.yaml can be cp'd from examples/ into desired/ as-is.
    s = "../" + Path(os.path.relpath(target.resolve(), yaml_dir.resolve().parent)).as_posix()
    return s if re.fullmatch(r"[A-Za-z0-9_./-]+", s) else json.dumps(s)  # quote odd paths


def render_yaml(
    version: str,
    model: Path,
    golden: Path,
    sha: str,
    yaml_dir: Path,
    rollout: str = IMMEDIATE,
    comment: str | None = None,
) -> bytes:
    """The ModelDeployment of `version`; `rollout` is the indented spec.rollout block."""
    comment = VERSIONS[version].comment if comment is None else comment
    # The interface is the contract every version must keep, so it is the same in all the
    # files - including v4's, whose model does not honour it.
    text = f"""\
# yaml-language-server: $schema={SCHEMA_ID}
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
{rollout}  retention:
    keep_standby: true
    keep_versions: 3
"""
    return text.encode()


def check_traps(model_bytes: dict[str, bytes], golden_inputs: dict[str, np.ndarray]) -> None:
    """v5 and v6 must behave as their YAML comments say, or the canary demo means nothing:
    both answer the golden inputs exactly as v2 does, and v5 fails a row whose first element
    is above the threshold. Raises RuntimeError (not assert: it must hold under -O too)."""
    want = reference_outputs(model_bytes["2"], golden_inputs)
    for version, v in VERSIONS.items():
        if v.trap is None:
            continue
        got = reference_outputs(model_bytes[version], golden_inputs)
        if got.keys() != want.keys() or not all(np.array_equal(got[k], want[k]) for k in want):
            raise RuntimeError(f"v{version} ({v.trap}) does not answer the golden inputs as v2")
        if v.trap == "flaky":
            bad = {"input": golden_inputs["input"][:1].copy()}
            bad["input"][0, 0, 0, 0] = 2.0 * FLAKY_THRESHOLD
            try:
                reference_outputs(model_bytes[version], bad, quiet=True)
            except Exception as e:  # onnxruntime's Fail/RuntimeException: what the server sees
                if "out of data bounds" not in str(e) and "out of bounds" not in str(e):
                    raise RuntimeError(f"v{version} failed, but not as designed: {e}") from e
            else:
                raise RuntimeError(f"v{version} answered an input with [0,0,0,0] = 2.0")


def _show(path: Path, data: bytes, note: str) -> None:
    try:
        shown = path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        shown = path
    sha = hashlib.sha256(data).hexdigest()[:12]
    print(f"{note:<9} {sha}  {shown}  ({len(data):,} bytes)")


def signing_key(key: Path) -> Path:
    """The publisher's key: made on first use (a real registry's key lives off the device).

    A key of hotswap's former ed25519 format is moved aside and replaced: packages are signed
    with ECDSA keys now."""
    from reconciler.core.errors import InvalidInput
    from reconciler.trust.signing import generate_keypair, load_private_key

    if key.exists():
        try:
            load_private_key(key)
        except InvalidInput as e:
            print(f"replacing the example key: {e}")
            for old in (key, key.with_suffix(".pub")):
                if old.exists():
                    old.rename(old.with_name(old.name + ".old"))
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
    from reconciler.trust.signing import publish

    examples = out if examples is None else examples
    key = signing_key(key or out.parent / "keys" / "hotswap.key")
    golden_inputs = {"input": np.random.default_rng(1234).standard_normal(BATCH, np.float32)}
    first = golden_inputs["input"][:, 0, 0, 0]
    if not np.all(first <= FLAKY_THRESHOLD):  # v5 must pass its health check on these
        raise RuntimeError(
            f"golden inputs' first elements {first.tolist()} would trip v5 (> {FLAKY_THRESHOLD})"
        )
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
        (vdir / "manifest.json.sig").unlink(missing_ok=True)  # the former format's signature
        # Signed even when bad: a signature says who published it, not that it works.
        publish(models[version], NAME, version, key, out)
        pins[version] = (models[version], vdir / "golden.npz", hashlib.sha256(data).hexdigest())
        yamls: list[tuple[str, str, str | None]] = [
            (f"{NAME}.v{version}{v.suffix}.yaml", CANARY if v.canary else IMMEDIATE, None)
        ]
        if version == "2":  # the same good upgrade, rolled out as a canary that passes
            yamls.append((f"{NAME}.v2-canary.yaml", CANARY, V2_CANARY_COMMENT))
        for filename, rollout, comment in yamls:
            path = examples / filename
            blob = render_yaml(version, *pins[version], examples, rollout, comment)
            _show(path, blob, "wrote" if write_atomic(path, blob) else "unchanged")
    check_traps(model_bytes, golden_inputs)
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
        description="Build the example ONNX classifier (versions 1-6: two good, one that outputs "
        "NaN, one that breaks the interface, one that fails ~16% of random requests, one "
        "several times slower), golden inputs/outputs, and a ModelDeployment YAML per version "
        "in examples/ (5 and 6 as canaries, plus classifier.v2-canary.yaml). Output is "
        "byte-for-byte reproducible.",
        epilog="Then roll out v2 with: cp examples/classifier.v2.yaml desired/classifier.yaml "
        "(or a canary: examples/classifier.v5-flaky.yaml, v6-slow, v2-canary)",
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
    print("as a canary:    cp examples/classifier.v2-canary.yaml desired/classifier.yaml")
    print("canaries that fail their gates: classifier.v5-flaky.yaml, classifier.v6-slow.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
