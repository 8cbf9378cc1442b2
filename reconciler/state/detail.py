"""A journal record's detail: its schema number, checked fields, and the promoted spec.

The ground `reconciler.state.records` and `reconciler.state.operator_records` stand on: every
record type writes `"schema"` and reads back both its current schema and 0.1.0's shape (no
`"schema"` key: schema 0). `Newer` marks a detail from a later release in a schema this one does
not know; readers keep such a record `Raw` rather than guess at it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from reconciler.core.desired import ModelSpec, spec_from_json, spec_to_json
from reconciler.core.names import StepName

SCHEMA_KEY = "schema"
SPEC_SCHEMA = 1  # of the promoted spec in swap and override records (their `spec_schema`)
SPEC_SCHEMA_KEY = "spec_schema"

# The steps of a plan (what the executor runs); restore is an event of startup.
PLAN_STEPS: frozenset[str] = frozenset(s.value for s in StepName) - {StepName.RESTORE.value}


class Unreadable(ValueError):
    """A detail that does not hold what its record type needs."""


class Newer(Unreadable):
    """A detail written by a later release in a schema this one does not know."""


def schema_of(detail: Mapping[str, Any], known: int, what: str) -> int:
    """The detail's schema (0 for 0.1.0's, which had none); raises Newer past `known`."""
    schema = detail.get(SCHEMA_KEY, 0)
    if type(schema) is not int or schema < 0:
        raise Unreadable(f"{what}: schema {schema!r} is not a version number")
    if schema > known:
        raise Newer(f"{what} schema {schema} is newer than this release reads ({known})")
    return schema


def get(
    detail: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any = ...
) -> Any:
    """`detail[key]` checked against `kind`; `default` when absent or null (required if none)."""
    value = detail.get(key)
    if value is None and default is not ...:
        return default
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
        raise Unreadable(f"{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def spec_to_record(spec: ModelSpec) -> dict[str, Any]:
    """A promoted spec as swap and override records keep it: what restore, a rollback to it and
    the standby match need (every field of the spec, JSON-safe). Its schema is written beside
    it (`spec_schema`), not inside: the spec object keeps exactly 0.1.0's keys for the fields
    0.1.0 had, so a device whose hotswap package is rolled back to 0.1.0 still restores what
    this release promoted."""
    return spec_to_json(spec)


def spec_from_record(data: Any, schema: Any = 0) -> ModelSpec:
    """The ModelSpec a swap or override record names (`schema`: the record's `spec_schema`),
    written by this release, 0.1.0 or a later one of the same schema: defaults for what it
    lacks, unknown keys ignored."""
    if not isinstance(data, Mapping):
        raise Unreadable(f"spec: expected an object, got {type(data).__name__}")
    schema_of({SCHEMA_KEY: schema}, SPEC_SCHEMA, "spec")
    try:
        return spec_from_json(data)
    except (KeyError, TypeError, ValueError) as e:
        raise Unreadable(f"spec: {e}") from e


class Typed:
    """What every record type declares: the phase and steps it is written under, its schema."""

    SCHEMA: ClassVar[int] = 1
    PHASE: ClassVar[str]
    STEPS: ClassVar[frozenset[str]]

    @classmethod
    def fits(cls, step: str, phase: str) -> bool:
        return phase == cls.PHASE and step in cls.STEPS

    def _detail(self, **body: Any) -> dict[str, Any]:
        return {SCHEMA_KEY: self.SCHEMA, **body}


@dataclass(frozen=True)
class Raw:
    """A record kept as written: one this release writes for people only (no type of its own),
    one from a later release in a schema this one does not know, or a damaged one (`problem`)."""

    detail: Mapping[str, Any]
    problem: str | None = None
