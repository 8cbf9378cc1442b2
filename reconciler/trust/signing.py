"""Signed model packages: ed25519 keys, signatures, and `publish`.

Called by the `keygen`, `sign`, `publish` and `verify` commands (`reconciler.cli.package`) and,
for the pure helpers (`key_id`, `parse_signatures`, `public_key_from_pem`), by the device's
trust core (`reconciler.trust.policy`), which decides what a signature is worth. The package
format itself (the manifest, its files and how it is parsed) is `reconciler.trust.manifest`.

A manifest is written as exactly `canonical_bytes(manifest)` and the signature covers exactly
those bytes: nothing is re-serialised between signing and checking. The signature file holds a
list so a key rollover can carry the old and the new key's signatures side by side.

A registry version is immutable: `manifest.json.sig` is written last and marks the version as
published; publishing different bytes under a published version is refused, publishing the
same bytes again is a no-op.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from reconciler.core.canonical import canonical_bytes
from reconciler.core.errors import IntegrityError, InvalidInput
from reconciler.state.atomic import atomic_write, atomic_writer
from reconciler.trust.manifest import (
    MANIFEST_FILE,
    MODEL_FILE,
    SIGNATURE_FILE,
    check_name_version,
    make_manifest,
    parse_manifest,
)
from runtime.fsutil import sha256_file

PRIVATE_KEY_FILE = "hotswap.key"
PUBLIC_KEY_FILE = "hotswap.pub"

_CHUNK = 1 << 20


# --- pure helpers -----------------------------------------------------------------------------


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex chars of sha256 over the raw 32-byte public key (a lookup name, not a proof)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign_bytes(data: bytes, private_key: Ed25519PrivateKey) -> dict[str, str]:
    """One signature entry over exactly `data`."""
    return {
        "keyid": key_id(private_key.public_key()),
        "sig": base64.b64encode(private_key.sign(data)).decode("ascii"),
    }


def add_signature(
    sig_doc: Mapping[str, Any] | None, data: bytes, private_key: Ed25519PrivateKey
) -> dict[str, Any]:
    """Sign `data` and merge the entry into a signature document (a new one when None).

    An entry of the same key is replaced (re-signing is idempotent); others are kept, so a
    rollover can add the new key's signature beside the old one."""
    entry = sign_bytes(data, private_key)
    existing = [] if sig_doc is None else list(sig_doc.get("signatures", []))
    kept = [e for e in existing if not (isinstance(e, dict) and e.get("keyid") == entry["keyid"])]
    return {"signatures": [*kept, entry]}


def parse_signatures(data: bytes) -> list[tuple[str, bytes]]:
    """(keyid, raw signature) pairs of a `manifest.json.sig`; IntegrityError(bad-signature) else.

    Strict on purpose: exactly {"signatures": [{"keyid", "sig"}, ...]}, base64 in its canonical
    form (no padding games), 64-byte signatures, so one document has one meaning."""

    def bad(why: str) -> IntegrityError:
        return IntegrityError(f"malformed signature file: {why}", reason="bad-signature")

    try:
        doc = json.loads(data)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise bad(f"not JSON ({e})") from e
    if not isinstance(doc, dict) or set(doc) != {"signatures"}:
        raise bad('expected an object with exactly one key, "signatures"')
    entries = doc["signatures"]
    if not isinstance(entries, list) or not entries:
        raise bad('"signatures" must be a non-empty list')
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) != {"keyid", "sig"}:
            raise bad(f'signatures[{i}] must have exactly "keyid" and "sig"')
        keyid, sig = entry["keyid"], entry["sig"]
        if not isinstance(keyid, str) or not re.fullmatch(r"[0-9a-f]{16}", keyid):
            raise bad(f"signatures[{i}].keyid is not 16 lowercase hex characters")
        if not isinstance(sig, str):
            raise bad(f"signatures[{i}].sig is not a string")
        try:
            raw = base64.b64decode(sig.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError) as e:
            raise bad(f"signatures[{i}].sig is not base64") from e
        if len(raw) != 64 or base64.b64encode(raw).decode("ascii") != sig:
            raise bad(f"signatures[{i}].sig is not a canonical base64 ed25519 signature")
        out.append((keyid, raw))
    return out


# --- keys on disk ------------------------------------------------------------------------------


def generate_keypair(out_dir: Path) -> tuple[Path, Path, str]:
    """Write `hotswap.key` (PKCS8 PEM, 0600) and `hotswap.pub` (SubjectPublicKeyInfo PEM).

    Returns (private key path, public key path, key id). Never overwrites a key: losing a
    signing key silently is worse than an error."""
    key_path, pub_path = out_dir / PRIVATE_KEY_FILE, out_dir / PUBLIC_KEY_FILE
    for path in (key_path, pub_path):
        if path.exists():
            raise InvalidInput(
                f"{path} already exists: refusing to overwrite a key (move it away or choose another --out)",
                reason="key-exists",
            )
    private_key = Ed25519PrivateKey.generate()
    public_key = private_key.public_key()
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(
        key_path,
        private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        mode=0o600,
    )
    atomic_write(pub_path, public_pem(public_key))
    return key_path, pub_path, key_id(public_key)


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An unencrypted ed25519 PKCS8 PEM key; InvalidInput naming the file otherwise."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InvalidInput(f"cannot read signing key {path}: {e.strerror}", "bad-key") from e
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise InvalidInput(
            f"{path}: not an unencrypted PEM private key ({e})", reason="bad-key"
        ) from e
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput(
            f"{path}: a {type(key).__name__}, hotswap signs with ed25519 keys only (hotswap keygen)",
            reason="bad-key",
        )
    return key


def public_key_from_pem(data: bytes, what: str) -> Ed25519PublicKey:
    """Parse a SubjectPublicKeyInfo PEM; ValueError naming `what` when it is not ed25519."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise ValueError(f"{what}: not a PEM public key ({e})") from e
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{what}: a {type(key).__name__}, only ed25519 keys are trusted")
    return key


# --- manifests and publishing ------------------------------------------------------------------


def file_digest(path: Path) -> tuple[str, int]:
    """(sha256 hex, size) of a file, streamed."""
    return sha256_file(path), path.stat().st_size


def build_manifest(
    name: str,
    version: str,
    files: Mapping[str, Path],
    interface: Mapping[str, Any] | None,
    expires: datetime | None,
    now: datetime,
) -> dict[str, Any]:
    """The manifest for `files` ({name in the package: path on disk}); hashes each file."""
    digests = {fname: file_digest(path) for fname, path in files.items()}
    return make_manifest(name, version, digests, interface, expires, now)


def onnx_interface(model_path: Path) -> dict[str, Any]:
    """The model's inputs (initializers excluded) and outputs: V2 datatypes, -1 for dynamic dims."""
    import onnx

    try:
        onnx.checker.check_model(str(model_path))
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as e:  # onnx and protobuf raise several types, all meaning "not a model"
        raise InvalidInput(f"{model_path}: not a valid ONNX model: {e}", "onnx-invalid") from e
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise InvalidInput(
                f"{model_path}: tensor {init.name!r} uses external data; publish packages a single self-contained model.onnx",
                reason="onnx-external-data",
            )
    # ONNX element type names are the V2 datatype names except for these
    special = {
        "FLOAT": "FP32",
        "FLOAT16": "FP16",
        "DOUBLE": "FP64",
        "BFLOAT16": "BF16",
        "STRING": "BYTES",
    }

    def tensors(values: Any, skip: set[str]) -> list[dict[str, Any]]:
        out = []
        for v in values:
            if v.name in skip:
                continue
            t = v.type.tensor_type
            onnx_name = onnx.TensorProto.DataType.Name(t.elem_type)
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            out.append(
                {"name": v.name, "datatype": special.get(onnx_name, onnx_name), "shape": dims}
            )
        return out

    initializers = {i.name for i in model.graph.initializer}
    return {
        "inputs": tensors(model.graph.input, initializers),
        "outputs": tensors(model.graph.output, set()),
    }


def publish(
    model: Path,
    name: str,
    version: str,
    key: Path,
    registry: Path,
    interface: Mapping[str, Any] | None = None,
    expires: datetime | None = None,
    now: datetime | None = None,
) -> Path:
    """Write a signed package `registry/name/version/` and return that directory.

    Each file is written atomically and `manifest.json.sig` last, so a version is published
    exactly when its signature file exists. Refuses a published version that holds other
    bytes; the same bytes again are a no-op (the existing manifest and signature are kept)."""
    check_name_version(name, version)
    if not model.is_file():
        raise InvalidInput(f"model file {model} does not exist", reason="source-missing")
    private_key = load_private_key(key)
    now = now or datetime.now(timezone.utc)
    pkg = registry / name / version
    model_sha, _ = file_digest(model)
    target = pkg / MODEL_FILE
    if (pkg / SIGNATURE_FILE).exists():
        existing = file_digest(target)[0] if target.is_file() else "missing"
        if existing == model_sha:
            return pkg
        raise InvalidInput(
            f"{pkg} is already published with another model (sha256 {existing}, this one is {model_sha}): "
            "a registry version is immutable, publish a new version",
            reason="version-exists",
        )
    if interface is None:
        interface = onnx_interface(model)
    if not (target.is_file() and file_digest(target)[0] == model_sha):
        with model.open("rb") as src, atomic_writer(target) as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
    manifest = build_manifest(name, version, {MODEL_FILE: target}, interface, expires, now)
    if manifest["files"][MODEL_FILE]["sha256"] != model_sha:
        raise IntegrityError(f"{model} changed while it was being published", "source-changed")
    data = canonical_bytes(manifest)
    atomic_write(pkg / MANIFEST_FILE, data)
    atomic_write(pkg / SIGNATURE_FILE, canonical_bytes(add_signature(None, data, private_key)))
    return pkg


def sign_manifest_file(manifest_path: Path, key: Path) -> tuple[Path, str]:
    """Add (or refresh) this key's signature in `<manifest>.sig`; returns (sig path, key id)."""
    private_key = load_private_key(key)
    data = manifest_path.read_bytes()
    parse_manifest(data)  # sign only what a device could accept
    sig_path = manifest_path.with_name(manifest_path.name + ".sig")
    doc: dict[str, Any] | None = None
    if sig_path.exists():
        parse_signatures(sig_path.read_bytes())  # refuse to extend a corrupt file
        doc = json.loads(sig_path.read_bytes())
    new_doc = add_signature(doc, data, private_key)
    atomic_write(sig_path, canonical_bytes(new_doc))
    return sig_path, new_doc["signatures"][-1]["keyid"]
