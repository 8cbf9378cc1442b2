"""The ModelDeployment JSON Schema (2020-12) as a validator, and its errors as file lines.

`load` calls `schema_errors` on every parsed document before building a spec, and `name_ok` to
decide whether a broken file may still name its model (so the planner holds that model). The
schema lives in `schemas/model-deployment.v1.json` (inside the wheel as `reconciler/_schemas`);
the validator is tuned for YAML: `pattern` anchors as ECMA-262 does, and 3.0, .nan and .inf are
not integers or usable numbers. Errors are reworded for a person editing the file: one line per
unknown or missing field, and a hint to quote values that YAML typed as something else.
"""

from __future__ import annotations

import functools
import json
import math
import re
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError, validators

from reconciler.source.messages import FieldPath, field_text
from reconciler.source.yamldoc import Document, locate

SCHEMA_FILE = "model-deployment.v1.json"
SchemaProblem = tuple[int, str, str]  # (line, field, message)


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


def schema_path(name: str = SCHEMA_FILE) -> Path:
    """Where a schema of schemas/ is: beside the package in a checkout, inside it in a wheel."""
    package = Path(__file__).resolve().parents[1]  # reconciler/
    for folder in (package.parent / "schemas", package / "_schemas"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{name} not found beside the reconciler package")


@functools.lru_cache(maxsize=4)
def _validator(name: str = SCHEMA_FILE) -> Any:
    return _Validator(json.loads(schema_path(name).read_text(encoding="utf-8")))


def name_ok(name: Any) -> bool:
    """Whether `name` is a valid metadata.name (then an error may name the model)."""
    props = _validator().schema["properties"]["metadata"]["properties"]
    return isinstance(name, str) and re.fullmatch(props["name"]["pattern"], name) is not None


def _unknown_fields(doc: Document, err: ValidationError, path: FieldPath) -> list[SchemaProblem]:
    line = doc.line_of(path)
    allowed = ", ".join(sorted(err.schema["properties"]))
    found = []
    for extra in (k for k in err.instance if k not in err.schema["properties"]):
        k_node, _ = locate(doc.loader, doc.root, (*path, extra))
        where = f"{field_text(path)}.{extra}" if path else str(extra)
        msg = f"unknown field {extra!r} (allowed: {allowed})"
        found.append((k_node.start_mark.line + 1 if k_node else line, where, msg))
    return found


def _missing_fields(doc: Document, err: ValidationError, path: FieldPath) -> list[SchemaProblem]:
    key, node = locate(doc.loader, doc.root, path)
    line = (key if key is not None else node).start_mark.line + 1
    return [
        (line, field_text(path), f"missing required field {name!r}")
        for name in err.validator_value
        if name not in err.instance
    ]


def _message(err: ValidationError) -> str:
    if err.validator in ("anyOf", "oneOf"):
        return f"{err.instance!r} is not valid: {err.schema.get('description', '')}"
    message = err.message
    scalar = not isinstance(err.instance, (dict, list, type(None)))
    if err.validator == "type" and "string" in err.validator_value and scalar:
        message += " (quote the value to make it a string)"
    return message


def schema_errors(doc: Document, schema: str = SCHEMA_FILE) -> list[SchemaProblem]:
    """Every violation in `doc` of a schema of schemas/ (default: ModelDeployment) as
    (line, field, message), sorted by line; the config file is checked by the same code."""
    found: list[SchemaProblem] = []
    done: set[FieldPath] = set()
    for err in _validator(schema).iter_errors(doc.data):
        path = tuple(err.absolute_path)
        if err.validator == "additionalProperties" and err.schema["additionalProperties"] is False:
            found.extend(_unknown_fields(doc, err, path))
        elif err.validator == "required":  # one error per missing field; report each once
            if path not in done:
                done.add(path)
                found.extend(_missing_fields(doc, err, path))
        else:
            found.append((doc.line_of(path), field_text(path), _message(err)))
    return sorted(found)


def schema_document(name: str = SCHEMA_FILE) -> dict[str, Any]:
    """A schema of schemas/ as data (the config layer reads its keys from it)."""
    return dict(_validator(name).schema)


def value_errors(value: Any, schema: dict[str, Any]) -> list[str]:
    """Why `value` does not fit `schema` (a part of a schema of schemas/), as messages."""
    return [_message(err) for err in _Validator(schema).iter_errors(value)]
