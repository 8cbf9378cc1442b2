"""Fetch: bring a model's bytes from its source into the content-addressed store.

Local paths and `file://` here; a network source is refused with a clear message rather than
fetched without the signed-package checks that must come with it.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from reconciler.desired import ModelSpec
from reconciler.errors import InvalidInput, TransientError
from reconciler.store import Store


def local_path(source: str) -> Path | None:
    parsed = urlparse(source)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme in ("", None) or len(parsed.scheme) == 1:  # plain path (or a Windows drive)
        return Path(source)
    return None


def fetch(spec: ModelSpec, store: Store) -> Path:
    where = f"{spec.file} spec.model.source" if spec.file else "spec.model.source"
    path = local_path(spec.source)
    if path is None:
        raise InvalidInput(
            f"fetch {spec.name} v{spec.version}: {where}: scheme of {spec.source!r} is not supported"
            " (use a path relative to the YAML file, an absolute path or file://)",
            reason="source-unsupported",
        )
    if store.has(spec.sha256):
        return store.path(spec.sha256)
    try:
        with path.open("rb") as stream:
            return store.put_stream(stream, spec.sha256, f"{spec.name} v{spec.version} ({path})")
    except FileNotFoundError as e:
        raise TransientError(
            f"fetch {spec.name} v{spec.version}: {where}: {path} does not exist",
            reason="source-missing",
        ) from e
    except IsADirectoryError as e:
        raise InvalidInput(
            f"fetch {spec.name} v{spec.version}: {where}: {path} is a directory",
            reason="source-invalid",
        ) from e
    except PermissionError as e:
        raise TransientError(
            f"fetch {spec.name} v{spec.version}: {where}: {path}: permission denied",
            reason="source-unreadable",
        ) from e
    except OSError as e:
        # ENOSPC, EIO: nothing was renamed into place; the next attempt starts clean.
        raise TransientError(
            f"fetch {spec.name} v{spec.version}: {e.strerror or e}", reason="fetch-io-error"
        ) from e
