"""How a problem in a desired file is worded: `x.yaml:7 spec.a: message`.

Every step of loading (`yamldoc`, `schema`, `spec`, `load`) reports through `load_error`, so the
CLI and the journal show one format whatever went wrong. File names are shown relative to the
working directory when they are under it, as a person typed them otherwise.
"""

from __future__ import annotations

import os
from typing import Any

from reconciler.core.desired import LoadError

MAX_MESSAGE = 300
FieldPath = tuple[Any, ...]  # a field path: mapping keys and list indexes


def display_path(path: str | os.PathLike[str]) -> str:
    given = str(path)
    try:
        cwd, full = os.getcwd(), os.path.abspath(given)
    except OSError:
        return given
    if full.startswith(cwd.rstrip(os.sep) + os.sep):
        return os.path.relpath(full, cwd)
    return given


def field_text(path: FieldPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_error(
    shown: str, line: int | None, field: str | None, message: str, model: str | None = None
) -> LoadError:
    """LoadError with "x.yaml:7 spec.a: message", "x.yaml:7 message" or "x.yaml: message"."""
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    where = f"{shown}:{line}" if line else f"{shown}:"
    text = f"{where} {field}: {message}" if field else f"{where} {message}"
    return LoadError(shown, text, model, line, field)
