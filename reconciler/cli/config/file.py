"""The config file read as desired files are: bounded YAML, its JSON Schema, file:line errors.

Called by `reconciler.cli.config.layers`. Parsing and schema checks are desired state's own
(`reconciler.source.yamldoc`, `reconciler.source.schema`), so a mistake reads the same wherever
it is: `/etc/hotswap/config.yaml:4 workers: 'four' is not of type 'integer'`. An empty file (or
one with only comments) is a valid config that sets nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.cli.config.keys import SCHEMA, config_keys
from reconciler.core.desired import LoadError
from reconciler.source.messages import display_path, field_text, load_error
from reconciler.source.schema import schema_errors
from reconciler.source.yamldoc import MAX_BYTES, parse_document


class ConfigError(Exception):
    """The configuration cannot be used; `problems` are one line each (file:line, key, why)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class FileValue:
    value: Any  # as the YAML says it
    line: int


def _raw(path: Path, shown: str) -> bytes:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise ConfigError([f"{shown}: cannot read the config file: {e.strerror or e}"]) from e
    if len(raw) > MAX_BYTES:
        raise ConfigError([f"{shown}: the config file is larger than {MAX_BYTES} bytes"])
    return raw


def _is_empty(raw: bytes) -> bool:
    lines = raw.decode("utf-8", errors="replace").splitlines()
    return all(not line.strip() or line.lstrip().startswith("#") for line in lines)


def _parsed(path: Path, shown: str) -> tuple[Any, list[LoadError]]:
    """The file's mapping (None when empty) and its problems, each naming file and line."""
    try:
        raw = _raw(path, shown)
    except ConfigError as e:
        return None, [LoadError(shown, e.problems[0])]
    if _is_empty(raw):
        return None, []
    doc = parse_document(raw, shown)
    if isinstance(doc, LoadError):
        return None, [doc]
    if not isinstance(doc.data, dict):
        line = doc.root.start_mark.line + 1
        return None, [
            load_error(shown, line, None, f"must be a mapping, not {type(doc.data).__name__}")
        ]
    problems = schema_errors(doc, SCHEMA)
    return doc, [load_error(shown, line, where or None, msg) for line, where, msg in problems]


def config_file_errors(path: Path) -> list[LoadError]:
    """What is wrong with a config file (`hotswap validate` reports these)."""
    return _parsed(path, display_path(path))[1]


def read_config_file(path: Path) -> dict[str, FileValue]:
    """The keys the file sets (by flat name) with their lines; ConfigError when it is invalid."""
    doc, problems = _parsed(path, display_path(path))
    if problems:
        raise ConfigError([p.message for p in problems])
    found: dict[str, FileValue] = {}
    for key in config_keys() if doc is not None else ():
        value: Any = doc.data
        for part in key.path:
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            found[key.name] = FileValue(value, doc.line_of(key.path))
    return found


def where_in_file(path: Path, line: int, key_path: tuple[str, ...]) -> str:
    """`file:line key` as errors and `hotswap config show` name a value of the file."""
    return f"{display_path(path)}:{line} {field_text(key_path)}"
