"""Helpers shared by the unit tests (not fixtures: conftest.py owns those)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from reconciler.core.desired import ModelSpec
from reconciler.source.load import load_file


def spec_from_doc(doc: dict[str, Any], directory: Path, **changes: Any) -> ModelSpec:
    """Load a deployment dict through the real loader (as the daemon would), then apply changes."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{doc['metadata']['name']}.v{doc['spec']['model']['version']}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    spec = load_file(path)
    assert isinstance(spec, ModelSpec), spec
    return dataclasses.replace(spec, **changes) if changes else spec


def golden(kit: Any, version: str = "1") -> dict[str, np.ndarray]:
    with np.load(kit.registry / "classifier" / version / "golden.npz") as data:
        return {k: data[k] for k in data.files}


def model_path(kit: Any, version: str = "1") -> Path:
    return kit.registry / "classifier" / version / "model.onnx"


def plain_spec(version: str, name: str = "classifier", **changes: Any) -> ModelSpec:
    """A deployment with only what the pure modules look at (no files behind it)."""
    s = ModelSpec(
        name=name,
        version=version,
        source=f"/registry/{name}/{version}/model.onnx",
        sha256=f"{int(version):064x}" if version.isdigit() else "f" * 64,
        file=f"/desired/{name}.yaml",
    )
    return dataclasses.replace(s, **changes) if changes else s
