"""Fetch: bring a model's bytes from its source into the content-addressed store.

The Fetch step (through `reconciler.ops.prepare`) calls `fetch(spec, store, ...)`; startup restore calls
it too when a promoted blob went missing. This layer knows the desired-state spec: it names the
desired file and field in every message and applies the global size cap; the resume and retry
loop lives in `transports.py`, the transports beside it (`files.py`, `http.py`). `fetch_bytes`
reads small documents (a manifest and its signature) under a 1 MiB cap; `manifest_location`
and `signature_location` say where a model's manifest and its package's `model.sig` are.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from reconciler.core.desired import ModelSpec
from reconciler.fetch.files import local_path
from reconciler.fetch.progress import Progress
from reconciler.fetch.transports import fetch_bytes as _fetch_bytes
from reconciler.fetch.transports import fetch_into_store
from reconciler.state.store import Store

__all__ = [
    "GLOBAL_MAX_BYTES",
    "fetch",
    "fetch_bytes",
    "local_path",
    "manifest_location",
    "signature_location",
]

# No model file is larger than this, whatever a manifest says (ONNX protobufs stop at 2 GiB;
# this leaves room for engines and external-data models while bounding a runaway stream).
GLOBAL_MAX_BYTES = 8 << 30
DOCUMENT_MAX_BYTES = 1 << 20


def fetch(
    spec: ModelSpec,
    store: Store,
    *,
    max_bytes: int | None = None,
    allow_http: bool = False,
    progress: Progress | None = None,
    **options: Any,
) -> Path:
    """The blob of `spec` in `store`, downloaded (or resumed) if it is not there yet.

    `max_bytes` (from the signed manifest, when there is one) is capped by GLOBAL_MAX_BYTES;
    `options` go to `fetch_into_store` (retries, timeouts, injected sleep/clock for tests).
    """
    where = f"{spec.file} spec.model.source" if spec.file else "spec.model.source"
    cap = GLOBAL_MAX_BYTES if max_bytes is None else min(max_bytes, GLOBAL_MAX_BYTES)
    return fetch_into_store(
        spec.source,
        spec.sha256,
        store,
        max_bytes=cap,
        allow_http=allow_http,
        progress=progress,
        what=f"fetch {spec.name} v{spec.version}: {where}",
        **options,
    )


def fetch_bytes(url: str, max_bytes: int = DOCUMENT_MAX_BYTES, allow_http: bool = False) -> bytes:
    """A small document (manifest, signature) in memory; more than `max_bytes` is refused."""
    return _fetch_bytes(url, min(max_bytes, DOCUMENT_MAX_BYTES), allow_http)


def manifest_location(spec: ModelSpec) -> str:
    """`spec.model.manifest`, or `manifest.json` beside the model, as `hotswap publish` lays out."""
    if spec.manifest:
        return spec.manifest
    if "://" in spec.source:
        return urljoin(spec.source, "manifest.json")
    return os.path.join(os.path.dirname(spec.source), "manifest.json")


def signature_location(spec: ModelSpec) -> str:
    """The package's signature bundle: `model.sig` beside its manifest, as `hotswap publish`
    and `model_signing sign --signature PKG/model.sig` lay it out."""
    manifest = manifest_location(spec)
    if "://" in manifest:
        return urljoin(manifest, "model.sig")
    return os.path.join(os.path.dirname(manifest), "model.sig")
