"""Loaded instances without a backend, for unit tests of the control plane's ops pieces."""

from __future__ import annotations

from typing import Any

from reconciler.core.desired import ModelSpec
from runtime.serving.slot import Instance


class FakeSession:
    """A session that answers nothing and counts its release."""

    def __init__(self) -> None:
        self.released = 0

    def infer(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {}

    def release(self) -> None:
        self.released += 1


def instance(spec: ModelSpec, memory: int = 0, key: str = "", healthy: bool = True) -> Instance:
    """An instance of `spec` as `Instances.load` describes one (sha256, build key, digest)."""
    meta = {
        "sha256": spec.sha256,
        "build_key": key or f"key-{spec.version}",
        "digest": spec.digest,
        "memory": memory,
    }
    return Instance(spec.name, spec.version, FakeSession(), meta, healthy=healthy)
