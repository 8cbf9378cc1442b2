"""Where a model's manifest and its package's model.sig are read from, as publish lays them out."""

from __future__ import annotations

import dataclasses

from reconciler.fetch.download import manifest_location, signature_location
from tests.support.units import plain_spec


def test_model_sig_sits_beside_the_manifest_for_urls_and_paths() -> None:
    spec = dataclasses.replace(
        plain_spec("2"), source="https://reg.example/m/2/model.onnx", manifest=None
    )
    assert manifest_location(spec) == "https://reg.example/m/2/manifest.json"
    assert signature_location(spec) == "https://reg.example/m/2/model.sig"
    moved = dataclasses.replace(spec, manifest="https://other.example/pkg/2/manifest.json")
    assert signature_location(moved) == "https://other.example/pkg/2/model.sig"
    local = dataclasses.replace(spec, source="/srv/reg/m/2/model.onnx")
    assert signature_location(local) == "/srv/reg/m/2/model.sig"
