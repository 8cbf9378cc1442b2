"""A schema-valid ModelDeployment document as a `ModelSpec`, with the rules a schema cannot say.

`load` calls `build_spec` once `schema.schema_errors` found nothing, so every field here has the
type and form the schema promised; what is left is defaults, durations, shape ranges, rollout
rules that span several fields, and resolving `source`, `manifest` and `golden`. Those rules
raise `Invalid(field path, message)`, which `load` turns into a LoadError on the field's line.
Paths are resolved lexically, never through symlinks, so they stay inside the snapshot the
caller passed.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.request import url2pathname

from reconciler.core.desired import (
    DEFAULT_STAGES,
    BatchingSpec,
    Gates,
    HealthSpec,
    ModelSpec,
    RetentionSpec,
    RolloutSpec,
    RolloutStage,
    ShapeRange,
    TensorSpec,
    UpdateWindow,
)
from reconciler.core.names import Strategy
from reconciler.core.ociref import OciRefError, is_oci, parse_oci
from reconciler.source.messages import FieldPath
from reconciler.source.window import WindowError, parse_window

_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class Invalid(Exception):
    """A rule the schema cannot say was broken: args are (field path, message)."""


def _location(ref: str | None, base_dir: str, path: FieldPath) -> str | None:
    """http(s) URLs as they are, file:// URLs and paths as normalised absolute paths."""
    if ref is None:
        return None
    scheme = _URL.match(ref)
    if scheme is None:  # lexical join: never follow symlinks out of the caller's snapshot
        return os.path.normpath(os.path.join(base_dir, ref))
    name = scheme.group(1).lower()
    if name in ("http", "https"):
        if ref[scheme.end() :][:1] in ("", "/"):
            raise Invalid(path, f"URL {ref!r} has no host")
        return ref
    if name != "file":
        raise Invalid(
            path, f"unsupported URL scheme {name!r} (use a path, file://, https:// or oci://)"
        )
    host, _, rest = ref[len("file://") :].partition("/")
    if host not in ("", "localhost"):
        raise Invalid(path, f"file URL {ref!r} names a remote host")
    return os.path.normpath(url2pathname("/" + rest))


def _source(ref: str, base_dir: str, path: FieldPath) -> str:
    """`spec.model.source`: a location, or an oci:// reference checked against its grammar."""
    if not is_oci(ref):
        return _location(ref, base_dir, path) or ""
    if "#" in ref:
        raise Invalid(path, f"{ref!r}: an oci:// source names the package, without #")
    try:
        parse_oci(ref)
    except OciRefError as e:
        raise Invalid(path, f"{ref!r}: {e}") from e
    return ref


def _shapes(shapes: dict[str, Any]) -> tuple[tuple[str, ShapeRange], ...]:
    out = []
    for name in sorted(shapes):
        where = ("spec", "runtime", "shapes", name)
        lo, opt, hi = (tuple(shapes[name][k]) for k in ("min", "opt", "max"))
        if not len(lo) == len(opt) == len(hi):
            lengths = f"{len(lo)}, {len(opt)}, {len(hi)}"
            raise Invalid(where, f"min, opt and max have different lengths ({lengths})")
        for a, a_name, b, b_name in ((lo, "min", opt, "opt"), (opt, "opt", hi, "max")):
            if any(x > y for x, y in zip(a, b, strict=True)):
                dims = f"{a_name} [{','.join(map(str, a))}] > {b_name} [{','.join(map(str, b))}]"
                raise Invalid(where, dims)
        out.append((name, ShapeRange(lo, opt, hi)))
    return tuple(out)


def parse_duration(text: str) -> float:
    """Seconds in "500ms", "30s", "5m", "1.5h" (the schema has already checked the form)."""
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a duration like 500ms, 30s, 5m or 1h")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


def _check_stages(strategy: str, stages: tuple[RolloutStage, ...]) -> None:
    if strategy == "immediate":
        return
    if not stages:
        raise Invalid(("spec", "rollout", "steps"), f"a {strategy} rollout needs at least one step")
    for i, stage in enumerate(stages):
        if stage.weight <= 0:
            raise Invalid(
                ("spec", "rollout", "steps", i, "weight"),
                f"a {strategy} step must send the candidate some traffic (weight > 0),"
                " or it can never be judged",
            )


def _check_canary(strategy: str, stages: tuple[RolloutStage, ...], gates: Gates) -> None:
    if strategy == "canary" and gates.max_p99_latency_ratio is not None:
        for i, stage in enumerate(stages):
            if stage.weight >= 100:
                raise Invalid(
                    ("spec", "rollout", "steps", i, "weight"),
                    "a 100% canary step leaves no requests on the serving version to compare"
                    " p99 latency with (max_p99_latency_ratio); use at most 99",
                )


def _rollout(rollout: dict[str, Any]) -> RolloutSpec:
    strategy = rollout.get("strategy", "immediate")
    written = rollout.get("steps")
    stages = tuple(
        RolloutStage(float(s["weight"]), parse_duration(s["for"]), s["for"]) for s in written or ()
    )
    if written is None:
        stages = DEFAULT_STAGES.get(strategy, ())
    _check_stages(strategy, stages)
    gates = Gates(**rollout.get("gates", {}))
    _check_canary(strategy, stages, gates)
    return RolloutSpec(
        strategy=Strategy(strategy),
        on_failure=rollout.get("on_failure", "revert"),
        steps=stages,
        gates=gates,
        window=_window(rollout.get("window")),
    )


def _window(value: Any) -> UpdateWindow | None:
    if value is None:
        return None
    try:
        return parse_window(value)
    except WindowError as e:
        path = ("spec", "rollout", "window") + ((e.field,) if e.field else ())
        raise Invalid(path, str(e)) from None


def _tensors(items: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(t["name"], t["datatype"], tuple(t["shape"])) for t in items)


def _health(health: dict[str, Any], base_dir: str) -> HealthSpec:
    max_latency = health.get("max_latency_ms")
    return HealthSpec(
        warmup_iterations=health.get("warmup", {}).get("iterations", 10),
        golden=_location(health.get("golden"), base_dir, ("spec", "health", "golden")),
        atol=float(health.get("atol", 1e-3)),
        rtol=float(health.get("rtol", 0)),
        max_latency_ms=None if max_latency is None else float(max_latency),
    )


def _batching(
    batching: dict[str, Any] | None, shapes: tuple[tuple[str, ShapeRange], ...]
) -> BatchingSpec | None:
    """`runtime.batching`, bounded by what `shapes` lets one backend call hold."""
    if batching is None:
        return None
    where = ("spec", "runtime", "batching")
    size = int(batching["max_batch_size"])
    bound = min((r.max[0] for _, r in shapes), default=None)
    if bound is not None and size > bound:
        limiting = min(shapes, key=lambda item: item[1].max[0])[0]
        raise Invalid(
            (*where, "max_batch_size"),
            f"{size} is more than shapes.{limiting}.max allows in its first dim ({bound})",
        )
    preferred = tuple(int(n) for n in batching.get("preferred_sizes", ()))
    for i, n in enumerate(preferred):
        if n > size:
            raise Invalid((*where, "preferred_sizes", i), f"{n} is more than max_batch_size {size}")
    delay = batching.get("max_queue_delay", "2ms")
    return BatchingSpec(size, parse_duration(delay), delay, preferred)


def build_spec(data: dict[str, Any], base_dir: str, shown: str) -> ModelSpec:
    """The ModelSpec of a schema-valid document; relative paths resolve against `base_dir`."""
    spec = data["spec"]
    model, runtime = spec["model"], spec.get("runtime", {})
    interface, retention = spec.get("interface", {}), spec.get("retention", {})
    at = {k: ("spec", "model", k) for k in ("source", "manifest")}
    return ModelSpec(
        name=data["metadata"]["name"],
        version=str(model["version"]),  # the schema allows an integer; ints are < 2**63
        source=_source(model["source"], base_dir, at["source"]),
        sha256=model["sha256"],
        backend=runtime.get("backend", "onnxruntime"),
        precision=runtime.get("precision", "fp32"),
        shapes=(shapes := _shapes(runtime.get("shapes", {}))),
        inputs=_tensors(interface.get("inputs", [])),
        outputs=_tensors(interface.get("outputs", [])),
        health=_health(spec.get("health", {}), base_dir),
        rollout=_rollout(spec.get("rollout", {})),
        retention=RetentionSpec(
            keep_standby=retention.get("keep_standby", True),
            keep_versions=retention.get("keep_versions", 3),
        ),
        manifest=_location(model.get("manifest"), base_dir, at["manifest"]),
        file=shown,
        batching=_batching(runtime.get("batching"), shapes),
    )
