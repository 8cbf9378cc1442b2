"""Signed packages and trust dirs made in a few milliseconds, for tests of the trust core.

Packages are real OpenSSF model signing bundles (`reconciler.trust.signing.sign_package` over a
temporary directory), keys real ECDSA keys, roots and leaf certificates real X.509: the device
code under test sees nothing it would not see in the field.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from reconciler.trust.policy import TrustPolicy, load_policy
from reconciler.trust.signing import public_pem, sign_directory


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def sign_files(
    files: Mapping[str, bytes],
    key: ec.EllipticCurvePrivateKey,
    certificate: bytes | None = None,
    chain: bytes | None = None,
) -> bytes:
    """The `model.sig` of a package directory holding exactly `files` (name -> bytes), signed as
    model_signing does (no check that the manifest is one a device would read)."""
    with tempfile.TemporaryDirectory() as tmp:
        pkg = Path(tmp) / "pkg"
        pkg.mkdir()
        for name, data in files.items():
            (pkg / name).write_bytes(data)
        key_path = write_private_key(Path(tmp) / "signing.key", key)
        cert_path, chain_paths = None, []
        if certificate is not None:
            cert_path = Path(tmp) / "signing.crt"
            cert_path.write_bytes(certificate)
            chain_paths.append(Path(tmp) / "chain.crt")
            chain_paths[0].write_bytes(chain or certificate)
        return sign_directory(pkg, key_path, cert_path, chain_paths).read_bytes()


def trust_dir(
    where: Path,
    keys: Sequence[ec.EllipticCurvePrivateKey] = (),
    roots: Sequence[bytes] = (),
    policy_yaml: str | None = None,
) -> Path:
    """A device trust dir trusting `keys` (as *.pub) and `roots` (PEM, as *.crt)."""
    where.mkdir(parents=True, exist_ok=True)
    for i, key in enumerate(keys):
        (where / f"publisher{i}.pub").write_bytes(public_pem(key.public_key()))
    for i, root in enumerate(roots):
        (where / f"root{i}.crt").write_bytes(root)
    if policy_yaml is not None:
        (where / "policy.yaml").write_text(policy_yaml)
    return where


def trusting(
    keys: Sequence[ec.EllipticCurvePrivateKey] = (), roots: Sequence[bytes] = ()
) -> TrustPolicy:
    """The policy of a device that trusts `keys` and `roots` and sets nothing else."""
    with tempfile.TemporaryDirectory() as tmp:
        return load_policy(trust_dir(Path(tmp) / "trust", keys, roots))


# --- a small PKI ---------------------------------------------------------------------------------


@dataclass
class Issued:
    key: ec.EllipticCurvePrivateKey
    pem: bytes  # the certificate


_EPOCH = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
        ]
    )


def make_root(cn: str = "Example Root CA") -> Issued:
    key = new_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_EPOCH)
        .not_valid_after(_EPOCH + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Issued(key, cert.public_bytes(serialization.Encoding.PEM))


def make_leaf(root: Issued, cn: str = "model-publisher", san: str = "ci@example.com") -> Issued:
    """A code-signing certificate for a new key, issued by `root`."""
    key = new_key()
    issuer = x509.load_pem_x509_certificate(root.pem)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_EPOCH)
        .not_valid_after(_EPOCH + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(san)]), critical=False)
        .sign(root.key, hashes.SHA256())
    )
    return Issued(key, cert.public_bytes(serialization.Encoding.PEM))
