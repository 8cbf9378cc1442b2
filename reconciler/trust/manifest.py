"""The package manifest: what it holds, how it is written and how it is read back.

Imported by both halves of the trust package: `reconciler.trust.signing` writes manifests
(`make_manifest`, written as exactly `canonical_bytes(manifest)`) and `reconciler.trust.policy`
reads them on the device (`parse_manifest`) to decide whether a version may be served. Keeping
the format here, pure and below both, is what lets each of them import it without importing the
other.

A package in a registry directory (any static file or HTTP server can serve it):

    REGISTRY/<name>/<version>/model.onnx
    REGISTRY/<name>/<version>/manifest.json   canonical JSON: name, version, files, expiry
    REGISTRY/<name>/<version>/golden.npz      ... anything else the publisher ships
    REGISTRY/<name>/<version>/model.sig       OpenSSF model signing bundle over all the above

`model.sig` signs every file of the directory (`reconciler.trust.oms`), the manifest among
them; the manifest binds name + version + sha256 and size of the model (so a validly signed old
model cannot be relabelled as a new version, and the download is capped before it starts), with
the model's interface, a creation time and an optional expiry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from reconciler.core.canonical import canonical_bytes
from reconciler.core.errors import IntegrityError, InvalidInput

API_VERSION = "hotswap/v1"
MANIFEST_KIND = "ModelManifest"
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "model.sig"  # the OpenSSF model signing bundle over the whole package

# The same patterns as schemas/model-deployment.v1.json (metadata.name, spec.model.version).
NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9._+-]{1,64}$")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_FIELDS = {"apiVersion", "kind", "name", "version", "files", "created", "expires", "interface"}


@dataclass(frozen=True)
class Manifest:
    """A parsed, well-formed manifest (signature not implied: see `policy.authorize`)."""

    name: str
    version: str
    files: dict[str, tuple[str, int]]  # file name -> (sha256, size)
    created: str
    expires: str | None = None
    interface: dict[str, Any] | None = None


def format_time(moment: datetime) -> str:
    """ISO 8601 UTC with second precision and a `Z`, the only form manifests carry."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware (use datetime.now(timezone.utc))")
    return moment.astimezone(timezone.utc).strftime(TIME_FORMAT)


def parse_time(text: object) -> datetime:
    """Inverse of `format_time`; ValueError for anything else."""
    if not isinstance(text, str) or not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text):
        raise ValueError(f"not a UTC timestamp like 2027-01-01T00:00:00Z: {text!r}")
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=timezone.utc)


def check_name_version(name: str, version: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"name {name!r} does not match {NAME_PATTERN.pattern} (as metadata.name in desired state)",
            reason="invalid-name",
        )
    if not VERSION_PATTERN.fullmatch(version):
        raise InvalidInput(
            f"version {version!r} does not match {VERSION_PATTERN.pattern} (as spec.model.version)",
            reason="invalid-version",
        )


def make_manifest(
    name: str,
    version: str,
    files: Mapping[str, tuple[str, int]],
    interface: Mapping[str, Any] | None,
    expires: datetime | None,
    now: datetime,
) -> dict[str, Any]:
    """The manifest document for already hashed files ({file name: (sha256, size)}). Pure."""
    check_name_version(name, version)
    if expires is not None and expires <= now:
        raise InvalidInput(
            f"expiry {format_time(expires)} is not after now ({format_time(now)})", "bad-expiry"
        )
    manifest: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": MANIFEST_KIND,
        "name": name,
        "version": version,
        "files": {f: {"sha256": sha, "size": size} for f, (sha, size) in sorted(files.items())},
        "created": format_time(now),
    }
    if interface is not None:
        manifest["interface"] = dict(interface)
    if expires is not None:
        manifest["expires"] = format_time(expires)
    return manifest


def _invalid(why: str) -> IntegrityError:
    return IntegrityError(f"invalid manifest: {why}", reason="manifest-invalid")


def parse_manifest(data: bytes) -> Manifest:
    """Parse canonical manifest bytes; IntegrityError(manifest-invalid) for anything else."""
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise _invalid(f"not JSON ({e})") from e
    if not isinstance(doc, dict):
        raise _invalid("not a JSON object")
    if canonical_bytes(doc) != data:
        raise _invalid("not in canonical form (sorted keys, no whitespace, ASCII)")
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != MANIFEST_KIND:
        raise _invalid(f"apiVersion/kind must be {API_VERSION}/{MANIFEST_KIND}")
    if unknown := sorted(set(doc) - _FIELDS):
        raise _invalid(f"unknown fields {unknown}")
    name, version = doc.get("name"), doc.get("version")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise _invalid(f"name {name!r} is not a model name")
    if not isinstance(version, str) or not VERSION_PATTERN.fullmatch(version):
        raise _invalid(f"version {version!r} is not a version label")
    files = _parse_files(doc.get("files"))
    created, expires = doc.get("created"), doc.get("expires")
    for key, value in (("created", created), ("expires", expires)):
        if key == "expires" and value is None:
            continue
        try:
            parse_time(value)
        except ValueError as e:
            raise _invalid(f"{key}: {e}") from e
    interface = doc.get("interface")
    if interface is not None and not isinstance(interface, dict):
        raise _invalid('"interface" must be an object')
    return Manifest(name, version, files, str(created), expires, interface)


def _parse_files(files_doc: object) -> dict[str, tuple[str, int]]:
    if not isinstance(files_doc, dict) or MODEL_FILE not in files_doc:
        raise _invalid(f'"files" must be an object listing {MODEL_FILE}')
    files: dict[str, tuple[str, int]] = {}
    for fname, entry in files_doc.items():
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*", fname):
            raise _invalid(f"file name {fname!r} is not a plain file name")
        if not isinstance(entry, dict) or set(entry) != {"sha256", "size"}:
            raise _invalid(f'files.{fname} must have exactly "sha256" and "size"')
        sha, size = entry["sha256"], entry["size"]
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise _invalid(f"files.{fname}.sha256 is not 64 lowercase hex characters")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _invalid(f"files.{fname}.size is not a byte count")
        files[fname] = (sha, size)
    return files
