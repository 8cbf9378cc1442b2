"""Publishing signed model packages: ECDSA keys, `publish` and `sign_package`.

Called by the `keygen`, `sign`, `publish` and `verify` commands (`reconciler.cli.package`) and by
the test and example builders. A package is a directory, signed as a whole with OpenSSF model
signing through model_signing's public API: `sign_package(pkg, key)` writes exactly what

    model_signing sign key PKG --private_key KEY --signature PKG/model.sig

writes (file serialization, sha256, git files and model.sig itself left out), so a package
signed either way verifies either way. The device side is `reconciler.trust.policy`.

A registry version is immutable: `model.sig` is written last and marks the version as
published; publishing different bytes under a published version is refused, publishing the
same bytes again is a no-op. Re-signing (`sign_package` on a published package, for a key
rotation) replaces `model.sig` and leaves every other file alone.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from reconciler.core.canonical import canonical_bytes
from reconciler.core.errors import IntegrityError, InvalidInput
from reconciler.state.atomic import (
    atomic_write,
    atomic_writer,
    commit_file,
    sweep_temp_files,
    temp_path_for,
)
from reconciler.trust.manifest import (
    MANIFEST_FILE,
    MODEL_FILE,
    SIGNATURE_FILE,
    check_name_version,
    make_manifest,
    parse_manifest,
)
from reconciler.trust.oms import SUPPORTED_CURVES, key_id, unverified_files
from runtime.fsutil import sha256_file

PRIVATE_KEY_FILE = "hotswap.key"
PUBLIC_KEY_FILE = "hotswap.pub"
CURVES = {"p256": ec.SECP256R1, "p384": ec.SECP384R1}

_CHUNK = 1 << 20


# --- keys on disk ------------------------------------------------------------------------------


def generate_keypair(out_dir: Path, curve: str = "p256") -> tuple[Path, Path, str]:
    """Write `hotswap.key` (ECDSA, PKCS8 PEM, 0600) and `hotswap.pub` (SubjectPublicKeyInfo PEM).

    The same files `openssl ecparam -genkey -name prime256v1` and `openssl ec -pubout` make,
    which is what model_signing signs and verifies with. Returns (private key path, public key
    path, key id). Never overwrites a key: losing a signing key silently is worse than an error."""
    key_path, pub_path = out_dir / PRIVATE_KEY_FILE, out_dir / PUBLIC_KEY_FILE
    for path in (key_path, pub_path):
        if path.exists():
            raise InvalidInput(
                f"{path} already exists: refusing to overwrite a key (move it away or choose another --out)",
                reason="key-exists",
            )
    if curve not in CURVES:
        raise InvalidInput(f"curve {curve!r}: choose one of {', '.join(CURVES)}", "bad-key")
    private_key = ec.generate_private_key(CURVES[curve]())
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


def public_pem(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """An unencrypted ECDSA P-256/P-384 PEM key; InvalidInput naming the file otherwise."""
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
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in SUPPORTED_CURVES:
        old = " (hotswap's former ed25519 format is gone: hotswap keygen makes a new key)"
        raise InvalidInput(
            f"{path}: a {type(key).__name__}; packages are signed with ECDSA P-256 or P-384 keys"
            + (old if "Ed25519" in type(key).__name__ else ""),
            reason="bad-key",
        )
    return key


# --- signing a package directory ---------------------------------------------------------------


def sign_package(
    pkg: Path,
    key: Path,
    certificate: Path | None = None,
    chain: Iterable[Path] = (),
) -> Path:
    """Sign the directory `pkg` as a whole into `pkg/model.sig`; returns that path.

    With `certificate` (the signing certificate, PEM, whose public key is `key`'s) and `chain`
    (intermediates), as `model_signing sign certificate`; otherwise as `model_signing sign key`.
    The bundle is written beside the package first (inside it, it would be hashed) and renamed
    into place, so `model.sig` appears whole or not at all. Stricter than model_signing in one
    way: the package must hold a manifest.json a device can read (IntegrityError otherwise)."""
    load_private_key(key)  # a clear error before model_signing's
    manifest = pkg / MANIFEST_FILE
    if not manifest.is_file():
        raise InvalidInput(
            f"{manifest} does not exist: a package needs one (hotswap publish --no-sign writes it)",
            reason="source-missing",
        )
    parse_manifest(manifest.read_bytes())  # sign only what a device could accept
    return sign_directory(pkg, key, certificate, chain)


def sign_directory(
    pkg: Path, key: Path, certificate: Path | None = None, chain: Iterable[Path] = ()
) -> Path:
    """`sign_package` without hotswap's check of the manifest: model_signing's behaviour alone."""
    import model_signing.hashing
    import model_signing.signing

    config = model_signing.signing.Config()
    if certificate is None:
        config.use_elliptic_key_signer(private_key=key)
    else:
        chain = list(chain)
        if not chain:  # model_signing cannot sign with an empty chain file list
            raise InvalidInput(
                "signing with a certificate needs its chain: pass the issuing CA's certificate"
                " (and any intermediates) with --certificate-chain",
                reason="bad-key",
            )
        config.use_certificate_signer(
            private_key=key, signing_certificate=certificate, certificate_chain=chain
        )
    config.set_hashing_config(
        model_signing.hashing.Config().set_ignored_paths(
            paths=[SIGNATURE_FILE], ignore_git_paths=True
        )
    )
    target = pkg / SIGNATURE_FILE
    tmp = temp_path_for(pkg.parent / f"{pkg.name}.{SIGNATURE_FILE}")
    try:
        try:
            config.sign(pkg, tmp)
        except ValueError as e:  # model_signing: a key that does not match the certificate, ...
            raise InvalidInput(f"cannot sign {pkg}: {e}", reason="bad-key") from e
        commit_file(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


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


def _check_published(pkg: Path, model_sha: str) -> bool:
    """True when `pkg` is already published with this model; InvalidInput when with another."""
    if not (pkg / SIGNATURE_FILE).exists():
        return False
    target = pkg / MODEL_FILE
    existing = file_digest(target)[0] if target.is_file() else "missing"
    if existing == model_sha:
        return True
    raise InvalidInput(
        f"{pkg} is already published with another model (sha256 {existing}, this one is {model_sha}): "
        "a registry version is immutable, publish a new version",
        reason="version-exists",
    )


def publish(
    model: Path,
    name: str,
    version: str,
    key: Path | None,
    registry: Path,
    interface: Mapping[str, Any] | None = None,
    expires: datetime | None = None,
    now: datetime | None = None,
    certificate: Path | None = None,
    chain: Iterable[Path] = (),
) -> Path:
    """Write the package `registry/name/version/` and return that directory.

    Copies the model, writes manifest.json (name, version, sha256 and size, interface, created,
    expiry), then signs the whole directory (`sign_package`), `model.sig` last, so a version is
    published exactly when its signature exists. `key=None` stops before signing: the package
    is then signed by `model_signing sign` (an HSM, Sigstore, a CI's own key). Refuses a
    published version that holds other bytes; the same bytes again are a no-op."""
    check_name_version(name, version)
    if not model.is_file():
        raise InvalidInput(f"model file {model} does not exist", reason="source-missing")
    if key is not None:
        load_private_key(key)
    now = now or datetime.now(timezone.utc)
    pkg = registry / name / version
    model_sha, size = file_digest(model)
    if _check_published(pkg, model_sha):
        return pkg
    sweep_temp_files(pkg)  # a crashed publish's leftovers would be signed as package files
    if interface is None:
        interface = onnx_interface(model)
    target = pkg / MODEL_FILE
    if not (target.is_file() and file_digest(target)[0] == model_sha):
        with model.open("rb") as src, atomic_writer(target) as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
    manifest = make_manifest(
        name, version, {MODEL_FILE: (model_sha, size)}, interface, expires, now
    )
    atomic_write(pkg / MANIFEST_FILE, canonical_bytes(manifest))
    if key is None:
        return pkg
    sig = sign_package(pkg, key, certificate, chain)
    signed = unverified_files(sig.read_bytes()).get(MODEL_FILE)
    if signed != ("sha256", model_sha):
        sig.unlink()
        raise IntegrityError(f"{model} changed while it was being published", "source-changed")
    return pkg


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
