"""Read desired-state YAML (apiVersion hotswap/v1) into `reconciler.core.desired` values.

Called by the controller once per reconcile pass (`load_dir` on the desired snapshot) and by the
CLI's `plan` and `status`. Problems come back as `LoadError` values, never as exceptions: an
invalid file must never stop the daemon or change what is served. A file whose metadata.name can
still be read names its model in the error, so the planner holds that model as it is.

Parsing is `yaml.SafeLoader` (compose for line numbers, then construct from the same nodes);
validation is JSON Schema 2020-12 (`schemas/model-deployment.v1.json`), then the few rules a
schema cannot say (shape ranges, path resolution). Paths are resolved lexically, never through
symlinks, so they stay inside the snapshot the caller passed.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from pathlib import Path
from typing import Any
from urllib.request import url2pathname

import yaml
from jsonschema import Draft202012Validator, ValidationError, validators
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.core.desired import (
    DEFAULT_STAGES,
    Desired,
    Gates,
    HealthSpec,
    LoadError,
    ModelSpec,
    RetentionSpec,
    RolloutSpec,
    RolloutStage,
    ShapeRange,
    TensorSpec,
)
from reconciler.core.names import Strategy
from reconciler.source.gitrev import git_revision

SCHEMA_FILE = "model-deployment.v1.json"
MAX_BYTES = 1 << 20  # a desired file is a few hundred bytes; refuse to parse megabytes
MAX_NODES = 50_000  # after alias expansion: stops "billion laughs" documents
MAX_MESSAGE = 300
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
FieldPath = tuple[Any, ...]  # a field path: mapping keys and list indexes


class _Invalid(Exception):
    """A rule the schema cannot say was broken: args are (field path, message)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that turns bad scalars (2024-13-45, `!!int ""`, huge ints) into marked errors."""

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ArithmeticError, AttributeError, LookupError, TypeError, ValueError) as e:
            # PyYAML's scalar constructors fail this way on values their tag does not fit
            text = f" {node.value[:40]!r}" if isinstance(node, ScalarNode) else ""
            msg = f"invalid {node.tag.rsplit(':', 1)[-1]} value{text}"
            raise ConstructorError(None, None, msg, node.start_mark) from e

    def construct_yaml_int(self, node: ScalarNode) -> int:
        value = 0 if len(node.value) > 80 else super().construct_yaml_int(node)
        if len(node.value) > 80 or not -(2**63) <= value < 2**63:
            raise ConstructorError(None, None, "integer out of 64-bit range", node.start_mark)
        return value


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict) -> Any:
    # ECMA-262 `$` only matches at the very end; Python's also matches before a final newline.
    anchored = pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern
    if isinstance(instance, str) and not re.search(anchored, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_TYPES = Draft202012Validator.TYPE_CHECKER.redefine_many(
    {  # YAML is typed: 3.0 is not an integer, and .nan/.inf are not usable numbers
        "integer": lambda _, v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda _, v: (
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ),
    }
)
_Validator = validators.extend(
    Draft202012Validator, validators={"pattern": _pattern}, type_checker=_TYPES
)


@functools.lru_cache(maxsize=1)
def _validator() -> Any:
    package = Path(__file__).resolve().parents[1]  # reconciler/
    # a source checkout keeps schemas/ beside the package; a wheel carries it inside as _schemas
    for folder in (package.parent / "schemas", package / "_schemas"):
        if (folder / SCHEMA_FILE).is_file():
            schema = json.loads((folder / SCHEMA_FILE).read_text(encoding="utf-8"))
            return _Validator(schema)
    raise FileNotFoundError(f"{SCHEMA_FILE} not found beside the reconciler package")


def _name_ok(name: Any) -> bool:
    props = _validator().schema["properties"]["metadata"]["properties"]
    return isinstance(name, str) and re.fullmatch(props["name"]["pattern"], name) is not None


def _display(path: str | os.PathLike[str]) -> str:
    given = str(path)
    try:
        cwd, full = os.getcwd(), os.path.abspath(given)
    except OSError:
        return given
    if full.startswith(cwd.rstrip(os.sep) + os.sep):
        return os.path.relpath(full, cwd)
    return given


def _field(path: FieldPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _error(
    shown: str, line: int | None, field: str | None, message: str, model: str | None = None
) -> LoadError:
    """LoadError with "x.yaml:7 spec.a: message", "x.yaml:7 message" or "x.yaml: message"."""
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    where = f"{shown}:{line}" if line else f"{shown}:"
    text = f"{where} {field}: {message}" if field else f"{where} {message}"
    return LoadError(shown, text, model, line, field)


def _node_count(node: Node, memo: dict[int, int], active: set[int]) -> int:
    if id(node) in memo:
        return memo[id(node)]
    if isinstance(node, ScalarNode):
        return 1
    if id(node) in active:
        raise ConstructorError(None, None, "recursive alias", node.start_mark)
    active.add(id(node))
    pairs = node.value if isinstance(node, SequenceNode) else [n for kv in node.value for n in kv]
    total = 1
    for child in pairs:
        total = min(total + _node_count(child, memo, active), MAX_NODES + 1)
    active.discard(id(node))
    memo[id(node)] = total
    return total


def _locate(loader: _Loader, root: Node, path: FieldPath) -> tuple[Node | None, Node]:
    """(key node, value node) at `path`; stops at the deepest node that exists."""
    key: Node | None = None
    node = root
    for part in path:
        if isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            key, node = None, node.value[part]
        elif isinstance(node, MappingNode):
            pairs = [kv for kv in node.value if isinstance(kv[0], ScalarNode)]
            found = [kv for kv in pairs if loader.construct_object(kv[0]) == part]
            if not found:
                break
            key, node = found[-1]  # the last duplicate wins, as in the constructed dict
        else:
            break
    return key, node


def _schema_errors(loader: _Loader, root: Node, data: Any) -> list[tuple[int, str, str]]:
    found: list[tuple[int, str, str]] = []
    done: set[FieldPath] = set()
    for err in _validator().iter_errors(data):
        path = tuple(err.absolute_path)
        key, node = _locate(loader, root, path)
        line = node.start_mark.line + 1
        if err.validator == "additionalProperties" and err.schema["additionalProperties"] is False:
            allowed = ", ".join(sorted(err.schema["properties"]))
            for extra in (k for k in err.instance if k not in err.schema["properties"]):
                k_node, _ = _locate(loader, root, (*path, extra))
                where = f"{_field(path)}.{extra}" if path else str(extra)
                msg = f"unknown field {extra!r} (allowed: {allowed})"
                found.append((k_node.start_mark.line + 1 if k_node else line, where, msg))
            continue
        if err.validator == "required":  # one error per missing field; report each once
            if path not in done:
                done.add(path)
                line = key.start_mark.line + 1 if key else line
                found.extend(
                    (line, _field(path), f"missing required field {name!r}")
                    for name in err.validator_value
                    if name not in err.instance
                )
            continue
        if err.validator in ("anyOf", "oneOf"):
            message = f"{err.instance!r} is not valid: {err.schema.get('description', '')}"
        else:
            message = err.message
            scalar = not isinstance(err.instance, (dict, list, type(None)))
            if err.validator == "type" and "string" in err.validator_value and scalar:
                message += " (quote the value to make it a string)"
        found.append((line, _field(path), message))
    return sorted(found)


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
            raise _Invalid(path, f"URL {ref!r} has no host")
        return ref
    if name != "file":
        raise _Invalid(path, f"unsupported URL scheme {name!r} (use a path, file:// or https://)")
    host, _, rest = ref[len("file://") :].partition("/")
    if host not in ("", "localhost"):
        raise _Invalid(path, f"file URL {ref!r} names a remote host")
    return os.path.normpath(url2pathname("/" + rest))


def _shapes(shapes: dict[str, Any]) -> tuple[tuple[str, ShapeRange], ...]:
    out = []
    for name in sorted(shapes):
        where = ("spec", "runtime", "shapes", name)
        lo, opt, hi = (tuple(shapes[name][k]) for k in ("min", "opt", "max"))
        if not len(lo) == len(opt) == len(hi):
            lengths = f"{len(lo)}, {len(opt)}, {len(hi)}"
            raise _Invalid(where, f"min, opt and max have different lengths ({lengths})")
        for a, a_name, b, b_name in ((lo, "min", opt, "opt"), (opt, "opt", hi, "max")):
            if any(x > y for x, y in zip(a, b, strict=True)):
                dims = f"{a_name} [{','.join(map(str, a))}] > {b_name} [{','.join(map(str, b))}]"
                raise _Invalid(where, dims)
        out.append((name, ShapeRange(lo, opt, hi)))
    return tuple(out)


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in "500ms", "30s", "5m", "1.5h" (the schema has already checked the form)."""
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a duration like 500ms, 30s, 5m or 1h")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


def _rollout(rollout: dict[str, Any]) -> RolloutSpec:
    strategy = rollout.get("strategy", "immediate")
    written = rollout.get("steps")
    stages = tuple(
        RolloutStage(float(s["weight"]), parse_duration(s["for"]), s["for"]) for s in written or ()
    )
    if written is None:
        stages = DEFAULT_STAGES.get(strategy, ())
    if strategy != "immediate":
        if not stages:
            raise _Invalid(
                ("spec", "rollout", "steps"), f"a {strategy} rollout needs at least one step"
            )
        for i, stage in enumerate(stages):
            if stage.weight <= 0:
                raise _Invalid(
                    ("spec", "rollout", "steps", i, "weight"),
                    f"a {strategy} step must send the candidate some traffic (weight > 0),"
                    " or it can never be judged",
                )
    gates = Gates(**rollout.get("gates", {}))
    if strategy == "canary" and gates.max_p99_latency_ratio is not None:
        for i, stage in enumerate(stages):
            if stage.weight >= 100:
                raise _Invalid(
                    ("spec", "rollout", "steps", i, "weight"),
                    "a 100% canary step leaves no requests on the serving version to compare"
                    " p99 latency with (max_p99_latency_ratio); use at most 99",
                )
    return RolloutSpec(
        strategy=Strategy(strategy),
        on_failure=rollout.get("on_failure", "revert"),
        steps=stages,
        gates=gates,
    )


def _tensors(items: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(t["name"], t["datatype"], tuple(t["shape"])) for t in items)


def _build(data: dict[str, Any], base_dir: str, shown: str) -> ModelSpec:
    spec = data["spec"]
    model, runtime = spec["model"], spec.get("runtime", {})
    interface, health = spec.get("interface", {}), spec.get("health", {})
    rollout, retention = spec.get("rollout", {}), spec.get("retention", {})
    at = {k: ("spec", "model", k) for k in ("source", "manifest")}
    max_latency = health.get("max_latency_ms")
    return ModelSpec(
        name=data["metadata"]["name"],
        version=str(model["version"]),  # the schema allows an integer; ints are < 2**63
        source=_location(model["source"], base_dir, at["source"]) or "",
        sha256=model["sha256"],
        backend=runtime.get("backend", "onnxruntime"),
        precision=runtime.get("precision", "fp32"),
        shapes=_shapes(runtime.get("shapes", {})),
        inputs=_tensors(interface.get("inputs", [])),
        outputs=_tensors(interface.get("outputs", [])),
        health=HealthSpec(
            warmup_iterations=health.get("warmup", {}).get("iterations", 10),
            golden=_location(health.get("golden"), base_dir, ("spec", "health", "golden")),
            atol=float(health.get("atol", 1e-3)),
            rtol=float(health.get("rtol", 0)),
            max_latency_ms=None if max_latency is None else float(max_latency),
        ),
        rollout=_rollout(rollout),
        retention=RetentionSpec(
            keep_standby=retention.get("keep_standby", True),
            keep_versions=retention.get("keep_versions", 3),
        ),
        manifest=_location(model.get("manifest"), base_dir, at["manifest"]),
        file=shown,
    )


def _parse(raw: bytes, shown: str) -> tuple[_Loader, Node, Any] | LoadError:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        return _error(shown, line, None, f"not valid UTF-8 (byte 0x{raw[e.start]:02x})")
    try:
        loader = _Loader(text)  # checks for unprintable characters first
    except yaml.reader.ReaderError as e:
        line = text[: e.position].count("\n") + 1
        return _error(shown, line, None, f"YAML syntax error: {e.reason} (#x{e.character:04x})")
    try:
        node = loader.get_single_node()
        if node is None:
            return _error(shown, None, None, "empty document (expected a ModelDeployment)")
        if _node_count(node, {}, set()) > MAX_NODES:
            return _error(shown, None, None, f"more than {MAX_NODES} YAML nodes after aliases")
        return loader, node, loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "invalid YAML"
        if problem.startswith("but ") and e.context:  # "expected a single document ..."
            problem = f"{e.context}, {problem}"
        column = f" (column {mark.column + 1})" if mark else ""
        mark_line = mark.line + 1 if mark else None
        return _error(shown, mark_line, None, f"YAML syntax error: {problem}{column}")
    except yaml.YAMLError as e:
        return _error(shown, None, None, f"YAML syntax error: {e}")
    except RecursionError:
        return _error(shown, None, None, "YAML nests too deeply")
    finally:
        loader.dispose()


def _load(path: Path, shown: str) -> tuple[ModelSpec | LoadError, int | None]:
    """The result, and the line of metadata.name (for duplicate-name errors)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        return _error(shown, None, None, f"cannot read: {e.strerror or e}"), None
    if len(raw) > MAX_BYTES:
        return _error(shown, None, None, f"file is larger than {MAX_BYTES} bytes"), None
    parsed = _parse(raw, shown)
    if isinstance(parsed, LoadError):
        return parsed, None
    loader, root, data = parsed
    if not isinstance(data, dict):
        kind = type(data).__name__
        msg = f"document must be a mapping (a ModelDeployment), not {kind}"
        return _error(shown, root.start_mark.line + 1, None, msg), None
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    model = name if _name_ok(name) else None
    name_line = _locate(loader, root, ("metadata", "name"))[1].start_mark.line + 1
    problems = _schema_errors(loader, root, data)
    if problems:
        line, where, msg = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return _error(shown, line, where or None, msg + more, model), name_line
    try:
        return _build(data, os.path.dirname(os.path.abspath(path)), shown), name_line
    except _Invalid as e:
        where, message = e.args
        line = _locate(loader, root, where)[1].start_mark.line + 1
        return _error(shown, line, _field(where), message, model), name_line


def load_file(path: Path, display: str | None = None) -> ModelSpec | LoadError:
    """One desired-state file as a ModelSpec, or a LoadError saying file:line, field and why."""
    return _load(Path(path), display if display is not None else _display(path))[0]


def load_dir(
    directory: Path, revision: str | None = None, display_dir: Path | str | None = None
) -> Desired:
    """Every *.yaml / *.yml directly in `directory` (sorted, hidden files skipped).

    `display_dir` names the files in messages: the controller reads a resolved git-sync snapshot
    but reports `desired/x.yaml`, a name that stays the same across symlink flips.
    """
    shown_dir = str(display_dir if display_dir is not None else directory)
    try:
        with os.scandir(directory) as entries:  # follows `directory` itself if it is a link
            names = sorted(
                e.name
                for e in entries
                if e.name.endswith((".yaml", ".yml")) and e.name[0] != "." and not e.is_dir()
            )
    except OSError as e:
        shown = _display(shown_dir)
        error = _error(shown, None, None, f"cannot read directory: {e.strerror or e}")
        return Desired(errors=(error,), revision=revision, readable=False)
    loaded = []
    claims: dict[str, list[str]] = {}
    for name in names:
        shown = _display(os.path.join(shown_dir, name))
        result, name_line = _load(Path(directory) / name, shown)
        loaded.append((shown, result, name_line))
        claimed = result.name if isinstance(result, ModelSpec) else result.model
        if claimed:
            claims.setdefault(claimed, []).append(shown)
    models: dict[str, ModelSpec] = {}
    errors: list[LoadError] = []
    for shown, result, name_line in loaded:
        if isinstance(result, LoadError):
            errors.append(result)
        elif len(claims[result.name]) > 1:
            others = ", ".join(f for f in claims[result.name] if f != shown)
            msg = f"model {result.name!r} is also defined in {others}"
            errors.append(_error(shown, name_line, "metadata.name", msg, result.name))
        else:
            models[result.name] = result
    return Desired(models=models, errors=tuple(errors), revision=revision)


def read_desired(desired_dir: Path) -> Desired:
    """One consistent snapshot: resolve the git-sync link once, read every file through it,
    and record the checkout's commit."""
    snapshot = Path(os.path.realpath(desired_dir))
    revision = git_revision(snapshot) if snapshot.is_dir() else None
    return load_dir(snapshot, revision=revision, display_dir=desired_dir)
