"""OpenSSF model signing (OMS) bundles: read one from bytes and verify it against trusted signers.

Called by `reconciler.trust.policy` (the device decides whether a version may be served, before
any model byte is fetched) and by `reconciler.trust.signing` (key ids, key files). A package's
`model.sig` is the Sigstore bundle `model_signing sign` writes: a DSSE envelope over an in-toto
statement that lists every file of the package directory with its digest. Verifying it here
needs only the bundle's bytes; which of those files the device then checks, and how, is the
policy's business (`SignedSet`).

The cryptography is model_signing's own verifiers (`sign_ec_key.Verifier`,
`sign_certificate.Verifier`), so the device accepts exactly what `model_signing verify key` /
`verify certificate` accept. They read bundles from a path and hash the model directory too; the
device has neither yet, so this module reads the bundle from bytes (as their `Signature.read`
does) and asks only for the signature check and the signed file list. Those are
`model_signing._signing` internals, pinned by the dependency on model-signing 1.1: all of them
are used in this one module.

Untrusted input never raises anything but `IntegrityError` from here: a bundle is parsed by
pydantic models and protobuf helpers whose exceptions are many and undocumented, so every
failure of theirs is caught and named.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from reconciler.core.errors import IntegrityError

SUPPORTED_CURVES = ("secp256r1", "secp384r1")
_STORE_LOCK = threading.Lock()


def key_hint(public_key: ec.EllipticCurvePublicKey) -> str:
    """sha256 hex of the SubjectPublicKeyInfo PEM: the `publicKey.hint` OMS puts in a bundle."""
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(pem).hexdigest()


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The first 16 hex characters of the key hint: a name for messages, not a proof."""
    return key_hint(public_key)[:16]


@dataclass(frozen=True)
class TrustedKey:
    keyid: str
    hint: str
    path: str
    verifier: Any  # model_signing's sign_ec_key.Verifier for this key


@dataclass(frozen=True)
class TrustedRoots:
    """The X.509 roots of the trust dir, one verifier over all of them."""

    fingerprints: tuple[str, ...]  # sha256 of each root's DER, hex
    paths: tuple[str, ...]
    verifier: Any  # model_signing's sign_certificate.Verifier


@dataclass(frozen=True)
class Identity:
    """A constraint on the signing certificate: every field given must match exactly."""

    subject: str | None = None  # RFC 4514, as `openssl x509 -subject -nameopt RFC2253` prints
    san: str | None = None  # one subjectAltName value: an email, DNS name, URI or IP

    def matches(self, cert: x509.Certificate) -> bool:
        if self.subject is not None and cert.subject.rfc4514_string() != self.subject:
            return False
        return self.san is None or self.san in certificate_sans(cert)

    def describe(self) -> str:
        parts = [f"subject {self.subject!r}"] if self.subject is not None else []
        return " and ".join(parts + ([f"SAN {self.san!r}"] if self.san is not None else []))


@dataclass(frozen=True)
class SignedSet:
    """What a verified bundle vouches for: each file name with (algorithm, hex digest)."""

    files: dict[str, tuple[str, str]]
    method: str  # model_signing's serialization: "files" (whole files) or "shards"
    keyid: str  # the trusted key's id, or the signing certificate's sha256 prefix
    signer: str  # for people: "key 0123..." or "certificate <subject>"
    kind: str = "key"  # "key" or "certificate": which trusted material vouched


def certificate_sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(name.value) for name in ext.value]


# --- trust dir material (read by load_policy) ---------------------------------------------------


class RetiredKeyFormat(ValueError):
    """An ed25519 key of hotswap's former package signatures: it can vouch for nothing now."""


def load_trusted_key(path: Path) -> TrustedKey:
    """An ECDSA P-256/P-384 public key file; ValueError naming the file otherwise."""
    from model_signing._signing import sign_ec_key

    data = path.read_bytes()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise ValueError(f"{path}: not a PEM public key ({e})") from e
    if isinstance(key, Ed25519PublicKey):
        raise RetiredKeyFormat(
            f"{path}: an ed25519 key of hotswap's former signature format, which is gone: "
            "packages are signed with OpenSSF model signing now (hotswap keygen makes an "
            "ECDSA P-256 key pair); this key is ignored, remove the file"
        )
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in SUPPORTED_CURVES:
        what = getattr(getattr(key, "curve", None), "name", type(key).__name__)
        raise ValueError(f"{path}: a {what} key; trusted keys are ECDSA P-256 or P-384")
    return TrustedKey(key_id(key), key_hint(key), str(path), sign_ec_key.Verifier(path))


def load_trusted_roots(paths: Iterable[Path]) -> TrustedRoots | None:
    """The PEM certificates in `paths` as one trust store; None when there are none.

    Never an empty store: model_signing's certificate verifier falls back to the operating
    system's roots (certifi) when given none, which would trust every public CA."""
    from model_signing._signing import sign_certificate

    paths = list(paths)
    fingerprints: list[str] = []
    for path in paths:
        try:
            certs = x509.load_pem_x509_certificates(path.read_bytes())
        except ValueError as e:
            raise ValueError(f"{path}: not a PEM certificate ({e})") from e
        fingerprints += [
            hashlib.sha256(c.public_bytes(serialization.Encoding.DER)).hexdigest() for c in certs
        ]
    if not paths:
        return None
    verifier = sign_certificate.Verifier(paths)
    return TrustedRoots(tuple(fingerprints), tuple(str(p) for p in paths), verifier)


# --- bundles (pure) -------------------------------------------------------------------------------


def _bad(why: str) -> IntegrityError:
    return IntegrityError(f"malformed signature bundle (model.sig): {why}", reason="bad-signature")


def parse_bundle(data: bytes) -> Any:
    """A model_signing `Signature` from `model.sig` bytes; IntegrityError(bad-signature) else.

    The same normalisation as model_signing's `Signature.read` (older bundles' fields)."""
    from model_signing._signing import sign_sigstore_pb
    from sigstore_models.bundle import v1 as bundle_pb

    try:
        doc = json.loads(data)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise _bad(f"not JSON ({e})") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("verificationMaterial"), dict):
        raise _bad("not a Sigstore bundle (no verificationMaterial object)")
    _check_base64(doc)
    material = doc["verificationMaterial"]
    material.setdefault("tlogEntries", [])
    if isinstance(material.get("publicKey"), dict):
        material["publicKey"].setdefault("hint", None)
        for k in ("rawBytes", "keyDetails"):
            material["publicKey"].pop(k, None)
    try:
        bundle = bundle_pb.Bundle.from_dict(doc)
    except Exception as e:  # pydantic ValidationError and whatever its validators raise
        raise _bad(_first_line(e)) from e
    if bundle.dsse_envelope is None or not bundle.dsse_envelope.signatures:
        raise _bad(
            "no DSSE envelope with a signature (a message-signature bundle is not a model signature)"
        )
    return sign_sigstore_pb.Signature(bundle)


def _check_base64(doc: dict[str, Any]) -> None:
    """The signed fields in canonical base64: one bundle, one spelling (padding bits unused by
    the decoder must be zero, so no byte of a bundle can change without changing its meaning)."""
    envelope = doc.get("dsseEnvelope")
    if not isinstance(envelope, dict):
        return  # pydantic names what is missing
    fields = [("dsseEnvelope.payload", envelope.get("payload"))]
    signatures = envelope.get("signatures")
    if isinstance(signatures, list):
        fields += [
            (f"dsseEnvelope.signatures[{i}].sig", e.get("sig") if isinstance(e, dict) else None)
            for i, e in enumerate(signatures)
        ]
    for where, value in fields:
        if not isinstance(value, str):
            raise _bad(f"{where} is not a base64 string")
        try:
            raw = base64.b64decode(value.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError) as e:
            raise _bad(f"{where} is not base64") from e
        if base64.b64encode(raw).decode("ascii") != value:
            raise _bad(f"{where} is not in canonical base64")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {' '.join(text[:3])[:300]}" if text else type(e).__name__


def verify_bundle(
    data: bytes,
    keys: Mapping[str, TrustedKey],
    roots: TrustedRoots | None,
    identities: tuple[Identity, ...],
    where: str,
) -> SignedSet:
    """Check `model.sig` against the trusted keys and roots; the files it vouches for.

    IntegrityError: bad-signature (malformed, or it does not verify), untrusted-key (no trusted
    key or root vouches for the signer), unsupported-signature (Sigstore keyless). `keys` is
    by hint; `where` names the trust dir in messages."""
    signature = parse_bundle(data)
    material = signature.bundle.verification_material
    if material.public_key is not None:
        return _verify_with_key(signature, material.public_key.hint, keys, where)
    if material.x509_certificate_chain is not None:
        return _verify_with_certificate(signature, roots, identities, where)
    if material.certificate is not None:
        raise IntegrityError(
            "signed with Sigstore keyless (a Fulcio certificate and a transparency log entry): "
            "this device verifies public keys and X.509 chains only",
            reason="unsupported-signature",
        )
    raise _bad("verificationMaterial names no public key and no certificate")


def _verify_with_key(
    signature: Any, hint: str | None, keys: Mapping[str, TrustedKey], where: str
) -> SignedSet:
    if not hint:
        raise _bad("the public key has no hint (an older model_signing made it: sign it again)")
    key = keys.get(hint)
    if key is None:
        trusted = sorted(k.keyid for k in keys.values())
        if not trusted:
            raise IntegrityError(
                f"signed by key {hint[:16]}, but there are no trusted keys in {where}: copy the "
                "publisher's hotswap.pub there (hotswap keygen makes one)",
                reason="untrusted-key",
            )
        raise IntegrityError(
            f"signed by key {hint[:16]}, not a trusted key: {where} trusts {trusted}",
            reason="untrusted-key",
        )
    manifest = _run_verifier(key.verifier, signature, f"the signature by trusted key {key.keyid}")
    return _signed_set(manifest, key.keyid, f"key {key.keyid}")


def _verify_with_certificate(
    signature: Any, roots: TrustedRoots | None, identities: tuple[Identity, ...], where: str
) -> SignedSet:
    chain = signature.bundle.verification_material.x509_certificate_chain.certificates
    try:
        leaf = x509.load_der_x509_certificate(chain[0].raw_bytes)
    except Exception as e:  # an empty chain, or bytes that are not DER
        raise _bad(f"the signing certificate cannot be read ({_first_line(e)})") from e
    subject = leaf.subject.rfc4514_string()
    fingerprint = hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()
    if roots is None:
        raise IntegrityError(
            f"signed by certificate {subject!r}, but there is no trusted root certificate "
            f"(*.crt) in {where}",
            reason="untrusted-key",
        )
    from OpenSSL.crypto import X509StoreContextError

    try:
        with _STORE_LOCK:  # the verifier sets its shared store's clock for each bundle
            manifest = roots.verifier.verify(signature)
    except X509StoreContextError as e:
        raise IntegrityError(
            f"the certificate {subject!r} does not chain to a root trusted in {where}: {e}",
            reason="untrusted-key",
        ) from e
    except InvalidSignature as e:
        raise IntegrityError(
            f"the signature by certificate {subject!r} does not verify: the bundle was altered",
            reason="bad-signature",
        ) from e
    except Exception as e:  # model_signing raises ValueError, KeyError, ... for a bad payload
        raise _bad(_first_line(e)) from e
    if identities and not any(i.matches(leaf) for i in identities):
        wanted = "; ".join(i.describe() for i in identities)
        raise IntegrityError(
            f"the certificate {subject!r} (SAN {certificate_sans(leaf)}) chains to a trusted root "
            f"but matches none of the certificate_identities in {where}: {wanted}",
            reason="untrusted-key",
        )
    return _signed_set(manifest, fingerprint[:16], f"certificate {subject}", "certificate")


def _run_verifier(verifier: Any, signature: Any, what: str) -> Any:
    try:
        return verifier.verify(signature)
    except InvalidSignature as e:
        raise IntegrityError(
            f"{what} does not verify: the bundle was altered", reason="bad-signature"
        ) from e
    except Exception as e:  # model_signing raises ValueError, KeyError, ... for a bad payload
        raise _bad(f"{what}: {_first_line(e)}") from e


def _signed_set(manifest: Any, keyid: str, signer: str, kind: str = "key") -> SignedSet:
    files = {
        str(rd.identifier): (str(rd.digest.algorithm), str(rd.digest.digest_hex))
        for rd in manifest.resource_descriptors()
    }
    method = str(manifest.serialization_type.get("method", ""))
    return SignedSet(files, method, keyid, signer, kind)


def unverified_files(data: bytes) -> dict[str, tuple[str, str]]:
    """The file list of a bundle, signature NOT checked: only for one this process just wrote
    (publish reads back what it signed); IntegrityError(bad-signature) when unreadable."""
    from model_signing._signing import signing

    envelope = parse_bundle(data).bundle.dsse_envelope
    try:
        manifest = signing.dsse_payload_to_manifest(json.loads(envelope.payload))
    except Exception as e:  # a payload model_signing cannot read
        raise _bad(_first_line(e)) from e
    return _signed_set(manifest, "", "").files
