"""The example models as tests use them: built once per session by examples/make_models.py."""

from __future__ import annotations

import copy
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from reconciler.trust.signing import publish

REPO = Path(__file__).resolve().parents[2]
INPUT_SHAPE = (1, 3, 224, 224)


def _load_make_models() -> Any:
    spec = importlib.util.spec_from_file_location(
        "make_models", REPO / "examples" / "make_models.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Kit:
    """The example models (versions 1-6) and their deployment documents, with absolute paths.

    `docs` is keyed by model version ("1" ... "6"; 5 and 6 roll out as canaries), plus
    "2-canary": v2 with the canary rollout of classifier.v2-canary.yaml (docs["2"] is the
    immediate one)."""

    registry: Path
    public_key: Path  # the publisher's key: a device trusts the kit once this is in its trust dir
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def doc(self, version: str, name: str = "classifier") -> dict[str, Any]:
        d = copy.deepcopy(self.docs[version])
        d["metadata"]["name"] = name
        if name != "classifier":
            # A signed manifest binds the name: another model name needs its own package.
            package = publish(
                Path(d["spec"]["model"]["source"]),
                name,
                d["spec"]["model"]["version"],  # "2" for the key "2-canary"
                self.public_key.with_suffix(".key"),
                self.registry,
            )
            d["spec"]["model"]["source"] = str(package / "model.onnx")
            d["spec"]["model"]["manifest"] = str(package / "manifest.json")
        return d

    def write(
        self,
        desired: Path,
        version: str,
        name: str = "classifier",
        filename: str | None = None,
        mutate: Callable[[dict[str, Any]], None] | None = None,
    ) -> Path:
        d = self.doc(version, name)
        if mutate:
            mutate(d)
        return write_text(
            desired / (filename or f"{name}.yaml"), yaml.safe_dump(d, sort_keys=False)
        )


def write_text(path: Path, text: str) -> Path:
    """Write like git and careful editors do: a complete file appears at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def make_kit(root: Path) -> Kit:
    make_models = _load_make_models()
    make_models.build(
        root / "registry", None, examples=root / "examples", key=root / "keys" / "hotswap.key"
    )
    result = Kit(root / "registry", root / "keys" / "hotswap.pub")
    for yaml_path in sorted((root / "examples").glob("classifier.v*.yaml")):
        doc = yaml.safe_load(yaml_path.read_text())
        version = doc["spec"]["model"]["version"]
        base = yaml_path.parent
        doc["spec"]["model"]["source"] = str((base / doc["spec"]["model"]["source"]).resolve())
        doc["spec"]["health"]["golden"] = str((base / doc["spec"]["health"]["golden"]).resolve())
        doc["spec"]["model"]["manifest"] = str((base / doc["spec"]["model"]["manifest"]).resolve())
        key = f"{version}-canary" if yaml_path.name.endswith("-canary.yaml") else version
        result.docs[key] = doc
    assert set(result.docs) >= {"1", "2", "3", "4", "5", "6", "2-canary"}
    assert result.docs["2"]["spec"]["rollout"]["strategy"] == "immediate"
    return result


def infer_body(value: float = 0.1, batch: int = 1) -> dict[str, Any]:
    data = np.full((batch, *INPUT_SHAPE[1:]), value, np.float32)
    return {
        "inputs": [
            {
                "name": "input",
                "shape": list(data.shape),
                "datatype": "FP32",
                "data": data.ravel().tolist(),
            }
        ]
    }
