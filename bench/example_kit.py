"""The example models and desired-state YAMLs every bench scenario deploys.

Called by swap_under_load.py and canary_under_load.py at the start of a run: build_kit() builds
the example classifier versions (examples/make_models.py, as tests/conftest.py does) into the
run's temp dir and loads their YAMLs with absolute paths, so the daemon can be pointed at any
of them by write_yaml_atomic(), which replaces the desired file in one step (temp file +
os.replace, as git and careful editors do) and returns the moment it did.

REPO and MODEL live here because everything else in bench/ is about this one model in this
repository; importing this module also puts the repo on sys.path, so that the bench scripts,
run as `python bench/<script>.py`, can import the product's `reconciler` and `runtime`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: runtime.serving.v2 is used to cost the JSON codec
    sys.path.insert(0, str(REPO))
MODEL = "classifier"


def load_make_models() -> Any:
    spec = importlib.util.spec_from_file_location(
        "make_models", REPO / "examples" / "make_models.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Kit:
    models: dict[str, Path]  # version -> model.onnx
    # version -> ModelDeployment with absolute paths; "2-canary": v2 rolled out as a canary
    docs: dict[str, dict[str, Any]]
    public_key: Path  # the publisher's key, installed in the daemon's trust dir
    flaky_threshold: float = 1.0  # v5 fails a request with a row whose input[n,0,0,0] is above


def build_kit(root: Path) -> Kit:
    """Build the example models like tests/conftest.py does; YAMLs get absolute paths."""
    make_models = load_make_models()
    with contextlib.redirect_stdout(io.StringIO()):
        models = make_models.build(root / "registry", None, examples=root / "examples")
    docs: dict[str, dict[str, Any]] = {}
    for yaml_path in sorted((root / "examples").glob(f"{MODEL}.v*.yaml")):
        doc = yaml.safe_load(yaml_path.read_text())
        base = yaml_path.parent
        spec = doc["spec"]
        spec["model"]["source"] = str((base / spec["model"]["source"]).resolve())
        spec["health"]["golden"] = str((base / spec["health"]["golden"]).resolve())
        spec["model"]["manifest"] = str((base / spec["model"]["manifest"]).resolve())
        version = spec["model"]["version"]
        docs[f"{version}-canary" if yaml_path.name.endswith("-canary.yaml") else version] = doc
    assert {"1", "2"} <= set(docs), f"example YAMLs missing: {sorted(docs)}"
    return Kit(
        {v: Path(p) for v, p in models.items()},
        docs,
        root / "keys" / "hotswap.pub",
        float(getattr(make_models, "FLAKY_THRESHOLD", 1.0)),
    )


def write_yaml_atomic(path: Path, doc: dict[str, Any]) -> tuple[float, float]:
    """Replace the desired file in one step; returns (monotonic, wall) time of the replace."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    t_mono, t_wall = time.monotonic(), time.time()
    os.replace(tmp, path)
    return t_mono, t_wall
