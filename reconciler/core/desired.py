"""Desired state as the planner sees it: frozen, validated values with no I/O.

The loader (`reconciler.source.load`) builds these from YAML after JSON Schema validation, so every
field here is already known to be well-formed; the planner trusts them. Paths are resolved to
absolute strings by the loader, because "relative to this file" only means something there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # KServe V2 datatype: FP32, FP16, INT64, ...
    shape: tuple[int, ...]  # -1 for a dynamic dimension


@dataclass(frozen=True)
class ShapeRange:
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class HealthSpec:
    warmup_iterations: int = 10
    golden: str | None = None  # absolute path of an npz with inputs and expected outputs
    atol: float = 1e-3
    rtol: float = 0.0
    max_latency_ms: float | None = None


@dataclass(frozen=True)
class RolloutStage:
    """One step of a canary (share of requests the candidate answers) or a shadow (share of
    requests mirrored to it), held for `duration_s` before it is judged."""

    weight: float  # percent, 0-100
    duration_s: float
    duration: str = ""  # as written ("30s"), for messages


@dataclass(frozen=True)
class Gates:
    """What a candidate must hold during each rollout stage; any crossed gate fails it."""

    max_error_rate: float = 0.01  # failed / requests answered (or mirrored) by the candidate
    max_p99_latency_ratio: float | None = None  # candidate p99 / active p99, judged per stage
    min_requests: int = 20  # candidate requests needed before a stage can pass
    max_output_divergence: float | None = None  # largest |candidate - active| on any output
    min_top1_agreement: float | None = None  # share of rows whose argmax matches the active's


# A canary or shadow written without steps gets these: small first, judged, then most traffic.
DEFAULT_STAGES = {
    "canary": (RolloutStage(10, 30.0, "30s"), RolloutStage(50, 30.0, "30s")),
    "shadow": (RolloutStage(100, 60.0, "60s"),),
}


@dataclass(frozen=True)
class RolloutSpec:
    strategy: str = "immediate"  # immediate | canary | shadow
    on_failure: str = "revert"
    steps: tuple[RolloutStage, ...] = ()
    gates: Gates = field(default_factory=Gates)

    @property
    def stages(self) -> tuple[RolloutStage, ...]:
        """The stages a candidate goes through before it is promoted (none when immediate)."""
        return () if self.strategy == "immediate" else self.steps


@dataclass(frozen=True)
class RetentionSpec:
    keep_standby: bool = True
    keep_versions: int = 3


@dataclass(frozen=True)
class ModelSpec:
    """One ModelDeployment: what should be served under `name`."""

    name: str
    version: str
    source: str  # absolute path or URL
    sha256: str
    backend: str = "onnxruntime"
    precision: str = "fp32"
    shapes: tuple[tuple[str, ShapeRange], ...] = ()
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    health: HealthSpec = field(default_factory=HealthSpec)
    rollout: RolloutSpec = field(default_factory=RolloutSpec)
    retention: RetentionSpec = field(default_factory=RetentionSpec)
    manifest: str | None = None
    file: str = ""  # the YAML file it came from, for messages and for holding on errors

    @property
    def digest(self) -> str:
        """sha256 of everything that makes this deployment what it is (not where it was read)."""
        body = asdict(self)
        body.pop("file")
        encoded = json.dumps(body, sort_keys=True, separators=(",", ":"), default=list)
        return hashlib.sha256(encoded.encode()).hexdigest()

    def shape_range(self, input_name: str) -> ShapeRange | None:
        return dict(self.shapes).get(input_name)


@dataclass(frozen=True)
class LoadError:
    """A desired-state file that could not be used; its model (when known) is held as it is."""

    file: str
    message: str  # "desired/classifier.yaml:14 spec.runtime.precision: 'fp64' is not one of ..."
    model: str | None = None  # metadata.name when it could still be read
    line: int | None = None
    field: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Desired:
    """A snapshot of the desired directory, read once per pass."""

    models: dict[str, ModelSpec] = field(default_factory=dict)
    errors: tuple[LoadError, ...] = ()
    revision: str | None = None  # git commit of the checkout, when it is one
    readable: bool = True  # False when the directory itself could not be read: unload nothing

    def held_models(self) -> set[str]:
        """Models whose files are invalid: keep them as they are, never unload them."""
        return {e.model for e in self.errors if e.model}

    def errored_files(self) -> set[str]:
        return {e.file for e in self.errors}


def spec_to_json(spec: ModelSpec) -> dict[str, Any]:
    """JSON-safe form for the journal, so recovery can restore exactly what was promoted."""
    return json.loads(json.dumps(asdict(spec), default=list))


def spec_from_json(data: dict[str, Any]) -> ModelSpec:
    def tensors(items: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec(t["name"], t["datatype"], tuple(t["shape"])) for t in items)

    shapes = tuple(
        (name, ShapeRange(tuple(r["min"]), tuple(r["opt"]), tuple(r["max"])))
        for name, r in data["shapes"]
    )
    return ModelSpec(
        **{
            **data,
            "shapes": shapes,
            "inputs": tensors(data["inputs"]),
            "outputs": tensors(data["outputs"]),
            "health": HealthSpec(**data["health"]),
            "rollout": _rollout_from_json(data["rollout"]),
            "retention": RetentionSpec(**data["retention"]),
        }
    )


def _rollout_from_json(data: dict[str, Any]) -> RolloutSpec:
    return RolloutSpec(
        strategy=data.get("strategy", "immediate"),
        on_failure=data.get("on_failure", "revert"),
        steps=tuple(RolloutStage(**s) for s in data.get("steps", ())),
        gates=Gates(**data.get("gates", {})),
    )
