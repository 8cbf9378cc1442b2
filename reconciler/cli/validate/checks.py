"""The checks `hotswap validate` runs on one file, each problem with its file and line.

Called by `reconciler.cli.validate.command`. A desired file goes through the daemon's own
loader (`reconciler.source.load`); its model's bytes through the daemon's fetch and verify
(`reconciler.fetch.download`, `reconciler.verify.model`), so CI refuses what a device would.
The signature is judged by `authorize_package` alone: the one place to change when the package
format changes. A file whose `kind` is `Config` is checked against the config schema instead.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.cli.config.file import config_file_errors
from reconciler.core.desired import LoadError, ModelSpec
from reconciler.core.errors import HotswapError, TransientError
from reconciler.source.load import load_file
from reconciler.source.messages import display_path, load_error
from reconciler.source.schema import schema_errors
from reconciler.source.yamldoc import locate, read_document
from reconciler.trust.policy import Authorization, TrustPolicy

MODEL_FIELDS = ("spec", "model", "source")
MANIFEST_FIELDS = ("spec", "model", "manifest")
INTERFACE_FIELDS = ("spec", "interface")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    message: str
    unreachable: bool = False  # a source that could not be read (exit 2), not an invalid file

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "message": self.message,
                "unreachable": self.unreachable}  # fmt: skip


@dataclass(frozen=True)
class Options:
    policy: TrustPolicy | None  # --trust-dir; None: signatures are not checked
    fetch: bool  # download remote sources too


def authorize_package(policy: TrustPolicy, spec: ModelSpec) -> Authorization:
    """The signed manifest of `spec` judged by `policy`, as the daemon judges it."""
    from reconciler.ops.authorization import Authorizer

    return Authorizer(policy).authorize(spec)


def _line(path: Path, fields: tuple[Any, ...], message: str) -> int | None:
    """The line of the field a message names (`spec.interface.outputs[0]`), else of `fields`."""
    doc = read_document(path, display_path(path))
    if isinstance(doc, LoadError):
        return None
    named = re.search(r"\bspec(?:\.[a-z_]+|\[\d+\])+", message)
    if named:
        parts = re.findall(r"[a-z_]+|\d+", named.group(0))
        fields = tuple(int(p) if p.isdigit() else p for p in parts)
    key, node = locate(doc.loader, doc.root, fields)
    return (key if key is not None else node).start_mark.line + 1


def _is_config(path: Path) -> bool:
    doc = read_document(path, display_path(path))
    return (
        not isinstance(doc, LoadError)
        and isinstance(doc.data, dict)
        and (doc.data.get("kind") == "Config")
    )


def check_file(path: Path, options: Options) -> list[Problem]:
    """Every problem of one file (empty: a device would accept it)."""
    if _is_config(path):
        return [Problem(e.file, e.line, e.message) for e in config_file_errors(path)]
    loaded = load_file(path)
    if isinstance(loaded, LoadError):
        return _every_schema_problem(path) or [Problem(loaded.file, loaded.line, loaded.message)]
    return _check_spec(path, loaded, options)


def _every_schema_problem(path: Path) -> list[Problem]:
    """All of a file's schema violations (the loader reports the first and a count)."""
    shown = display_path(path)
    doc = read_document(path, shown)
    if isinstance(doc, LoadError) or not isinstance(doc.data, dict):
        return []
    return [
        Problem(shown, line, load_error(shown, line, where or None, msg).message)
        for line, where, msg in schema_errors(doc)
    ]


def _is_local(spec: ModelSpec) -> bool:
    return "://" not in spec.source or spec.source.startswith("file://")


def _check_spec(path: Path, spec: ModelSpec, options: Options) -> list[Problem]:
    shown = display_path(path)
    if not (_is_local(spec) or options.fetch):
        return []  # remote bytes are read only when asked (--fetch)
    problems: list[Problem] = []
    if options.policy is not None:
        try:
            authorize_package(options.policy, spec)
        except HotswapError as e:
            problems.append(_problem(shown, path, MANIFEST_FIELDS, e))
    with tempfile.TemporaryDirectory(prefix="hotswap-validate-") as tmp:
        try:
            model = _model_file(spec, options, Path(tmp))
        except HotswapError as e:
            return [*problems, _problem(shown, path, MODEL_FIELDS, e)]
        problems.extend(_check_interface(shown, path, spec, model, options.policy))
    return problems


def _model_file(spec: ModelSpec, options: Options, tmp: Path) -> Path:
    from reconciler.fetch.download import fetch
    from reconciler.state.store import Store

    allow_http = options.policy.allow_http if options.policy is not None else True
    return fetch(spec, Store(tmp), allow_http=allow_http, retries=1)


def _check_interface(
    shown: str, path: Path, spec: ModelSpec, model: Path, policy: TrustPolicy | None
) -> list[Problem]:
    from reconciler.verify.model import verify

    limits: dict[str, Any] = {}
    if policy is not None:
        limits = {"allowed_domains": policy.allowed_domains, "max_bytes": policy.max_model_bytes}
    try:
        verify(spec, model, **limits)
    except HotswapError as e:
        return [_problem(shown, path, INTERFACE_FIELDS, e)]
    return []


def _problem(shown: str, path: Path, fields: tuple[str, ...], e: HotswapError) -> Problem:
    unreachable = isinstance(e, TransientError) and e.reason != "source-missing"
    message = f"{e} [{e.reason}]"
    return Problem(shown, _line(path, fields, message), message, unreachable)
