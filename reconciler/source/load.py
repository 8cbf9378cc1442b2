"""Read desired-state YAML (apiVersion hotswap/v1) into `reconciler.core.desired` values.

Called by the controller once per reconcile pass (`read_desired` on the desired snapshot) and by
the CLI's `plan` and `status`. Problems come back as `LoadError` values, never as exceptions: an
invalid file must never stop the daemon or change what is served. A file whose metadata.name can
still be read names its model in the error, so the planner holds that model as it is.

One file goes through three steps, each in its own module: `yamldoc` (bounded read and
SafeLoader parse, keeping line numbers), `schema` (JSON Schema 2020-12,
`schemas/model-deployment.v1.json`) and `spec` (the rules a schema cannot say, and the typed
ModelSpec). This module runs them in order and reads a whole directory snapshot, where it also
refuses two files that claim the same model.
"""

from __future__ import annotations

import os
from pathlib import Path

from reconciler.core.desired import Desired, LoadError, ModelSpec
from reconciler.source.gitrev import git_revision
from reconciler.source.messages import display_path, field_text, load_error
from reconciler.source.schema import name_ok, schema_errors
from reconciler.source.spec import Invalid, build_spec, parse_duration
from reconciler.source.yamldoc import read_document

__all__ = ["load_dir", "load_file", "parse_duration", "read_desired"]


def _load(path: Path, shown: str) -> tuple[ModelSpec | LoadError, int | None]:
    """The result, and the line of metadata.name (for duplicate-name errors)."""
    doc = read_document(path, shown)
    if isinstance(doc, LoadError):
        return doc, None
    if not isinstance(doc.data, dict):
        kind = type(doc.data).__name__
        msg = f"document must be a mapping (a ModelDeployment), not {kind}"
        return load_error(shown, doc.root.start_mark.line + 1, None, msg), None
    metadata = doc.data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    model = name if name_ok(name) else None
    name_line = doc.line_of(("metadata", "name"))
    problems = schema_errors(doc)
    if problems:
        line, where, msg = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return load_error(shown, line, where or None, msg + more, model), name_line
    try:
        return build_spec(doc.data, os.path.dirname(os.path.abspath(path)), shown), name_line
    except Invalid as e:
        where, message = e.args
        return load_error(shown, doc.line_of(where), field_text(where), message, model), name_line


def load_file(path: Path, display: str | None = None) -> ModelSpec | LoadError:
    """One desired-state file as a ModelSpec, or a LoadError saying file:line, field and why."""
    return _load(Path(path), display if display is not None else display_path(path))[0]


def _yaml_names(directory: Path) -> list[str]:
    with os.scandir(directory) as entries:  # follows `directory` itself if it is a link
        return sorted(
            e.name
            for e in entries
            if e.name.endswith((".yaml", ".yml")) and e.name[0] != "." and not e.is_dir()
        )


def load_dir(
    directory: Path, revision: str | None = None, display_dir: Path | str | None = None
) -> Desired:
    """Every *.yaml / *.yml directly in `directory` (sorted, hidden files skipped).

    `display_dir` names the files in messages: the controller reads a resolved git-sync snapshot
    but reports `desired/x.yaml`, a name that stays the same across symlink flips.
    """
    shown_dir = str(display_dir if display_dir is not None else directory)
    try:
        names = _yaml_names(directory)
    except OSError as e:
        shown = display_path(shown_dir)
        error = load_error(shown, None, None, f"cannot read directory: {e.strerror or e}")
        return Desired(errors=(error,), revision=revision, readable=False)
    loaded = []
    claims: dict[str, list[str]] = {}
    for name in names:
        shown = display_path(os.path.join(shown_dir, name))
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
            errors.append(load_error(shown, name_line, "metadata.name", msg, result.name))
        else:
            models[result.name] = result
    return Desired(models=models, errors=tuple(errors), revision=revision)


def read_desired(desired_dir: Path) -> Desired:
    """One consistent snapshot: resolve the git-sync link once, read every file through it,
    and record the checkout's commit."""
    snapshot = Path(os.path.realpath(desired_dir))
    revision = git_revision(snapshot) if snapshot.is_dir() else None
    return load_dir(snapshot, revision=revision, display_dir=desired_dir)
