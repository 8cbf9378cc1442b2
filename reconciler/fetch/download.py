"""Fetch: bring a model's bytes from its source into the content-addressed store.

The Fetch step (through `reconciler.ops.prepare`) calls `fetch(spec, store, ...)`; startup restore calls
it too when a promoted blob went missing. This layer knows the desired-state spec: it names the
desired file and field in every message and applies the global size cap; the resume and retry
loop lives in `transports.py`, the transports beside it (`files.py`, `http.py`). `fetch_bytes`
reads small documents (a manifest and its signature) under a 1 MiB cap; `manifest_location`
says where a model's manifest is, `signature_location` its package's `model.sig`, and `beside`
where any other file of its package is. For an `oci://` source those are members of the artifact
(`#sha256:<model sha256>` for the model, `#manifest.json` ...; see `reconciler.core.ociref`).
`credentials` (`<trust>/credentials.yaml`) go to every network transport.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from reconciler.core.desired import ModelSpec
from reconciler.core.ociref import is_oci
from reconciler.fetch.credentials import Credentials
from reconciler.fetch.files import local_path
from reconciler.fetch.oci import parse_ref
from reconciler.fetch.progress import Progress
from reconciler.fetch.transports import fetch_bytes as _fetch_bytes
from reconciler.fetch.transports import fetch_into_store
from reconciler.state.store import Store

__all__ = [
    "GLOBAL_MAX_BYTES",
    "beside",
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
    credentials: Credentials | None = None,
    **options: Any,
) -> Path:
    """The blob of `spec` in `store`, downloaded (or resumed) if it is not there yet.

    `max_bytes` (from the signed manifest, when there is one) is capped by GLOBAL_MAX_BYTES;
    `options` go to `fetch_into_store` (retries, timeouts, injected sleep/clock for tests).
    """
    where = f"{spec.file} spec.model.source" if spec.file else "spec.model.source"
    cap = GLOBAL_MAX_BYTES if max_bytes is None else min(max_bytes, GLOBAL_MAX_BYTES)
    url = spec.source
    if is_oci(url):  # the model is the artifact's layer that the pinned sha256 names
        url = str(parse_ref(url).with_member(f"sha256:{spec.sha256}"))
    return fetch_into_store(
        url,
        spec.sha256,
        store,
        max_bytes=cap,
        allow_http=allow_http,
        progress=progress,
        what=f"fetch {spec.name} v{spec.version}: {where}",
        credentials=credentials,
        **options,
    )


def fetch_bytes(
    url: str,
    max_bytes: int = DOCUMENT_MAX_BYTES,
    allow_http: bool = False,
    credentials: Credentials | None = None,
) -> bytes:
    """A small document (manifest, signature) in memory; more than `max_bytes` is refused."""
    cap = min(max_bytes, DOCUMENT_MAX_BYTES)
    return _fetch_bytes(url, cap, allow_http, credentials=credentials)


def beside(source: str, name: str) -> str:
    """The package file `name` next to the model at `source` (a member of an OCI artifact)."""
    if is_oci(source):
        return str(parse_ref(source).with_member(name))
    if "://" in source:
        return urljoin(source, name)
    return os.path.join(os.path.dirname(source), name)


def manifest_location(spec: ModelSpec) -> str:
    """`spec.model.manifest`, or `manifest.json` beside the model, as `hotswap publish` lays out."""
    return spec.manifest or beside(spec.source, "manifest.json")


def signature_location(spec: ModelSpec) -> str:
    """The package's signature bundle: `model.sig` beside its manifest, as `hotswap publish`
    and `model_signing sign --signature PKG/model.sig` lay it out (for an OCI artifact: its
    member of that name)."""
    return beside(manifest_location(spec), "model.sig")
