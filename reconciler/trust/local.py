"""A package directory on disk, checked as `model_signing verify` and then the device would.

Called by `hotswap verify` (`reconciler.cli.package`), the publisher's and the device owner's
check before anything is deployed. The daemon never calls this: it has only the bundle and the
manifest before the download, and checks the model's bytes as it stores them
(`reconciler.trust.policy.authorize`). Here every file of the directory is hashed once, by
model_signing's verifier configured as its CLI configures it, and the model's sha256 is then
taken from the signature rather than hashed again.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from reconciler.core.errors import IntegrityError, InvalidInput
from reconciler.trust.manifest import (
    MANIFEST_FILE,
    MODEL_FILE,
    SIGNATURE_FILE,
    Manifest,
    parse_manifest,
)
from reconciler.trust.oms import SignedSet
from reconciler.trust.policy import (
    Authorization,
    TrustPolicy,
    authorize,
    check_signature,
    check_signed_manifest,
)
from runtime.fsutil import sha256_file


def verify_files(pkg: Path, policy: TrustPolicy, signed: SignedSet) -> None:
    """Every file of `pkg` against `model.sig`, exactly as

        model_signing verify key|certificate PKG --signature PKG/model.sig ...

    does with the trusted key or roots that vouched for `signed`; IntegrityError otherwise."""
    import model_signing.hashing
    import model_signing.verifying

    config = model_signing.verifying.Config()
    if signed.kind == "key":
        key = next(k for k in policy.keys.values() if k.keyid == signed.keyid)
        config.use_elliptic_key_verifier(public_key=key.path)
    else:
        assert policy.roots is not None  # check_signature vouched with them
        config.use_certificate_verifier(certificate_chain=list(policy.roots.paths))
    config.set_hashing_config(
        model_signing.hashing.Config().set_ignored_paths(
            paths=[SIGNATURE_FILE], ignore_git_paths=True
        )
    )
    try:
        config.verify(pkg, pkg / SIGNATURE_FILE)
    except ValueError as e:
        if str(e).startswith("Signature mismatch"):
            raise IntegrityError(
                f"{pkg} does not match {SIGNATURE_FILE}: {e}", reason="sha256-mismatch"
            ) from e
        raise IntegrityError(f"{pkg}: {e}", reason="bad-signature") from e
    except Exception as e:  # model_signing's hashing and verifiers raise many kinds
        raise IntegrityError(f"{pkg}: {type(e).__name__}: {e}", reason="bad-signature") from e


def _check_listed_files(pkg: Path, parsed: Manifest) -> None:
    """An unsigned package: the files the manifest lists, against its sha256 and sizes."""
    for fname, (sha, size) in sorted(parsed.files.items()):
        fpath = pkg / fname
        if not fpath.is_file():
            raise InvalidInput(f"{fpath} (listed in the manifest) does not exist", "source-missing")
        if fpath.stat().st_size != size:
            raise IntegrityError(
                f"{fpath} is {fpath.stat().st_size} bytes, the manifest says {size}",
                "size-mismatch",
            )
        actual = sha256_file(fpath)
        if actual != sha:
            raise IntegrityError(
                f"{fpath} has sha256 {actual}, the manifest says {sha}", "sha256-mismatch"
            )


def verify_package(
    path: Path, policy: TrustPolicy, now: datetime
) -> tuple[Manifest, Authorization]:
    """Check a package on disk (its directory, manifest.json or model.sig): the signature, every
    file, then name/version, expiry and min_version as the daemon would. InvalidInput for
    missing files, IntegrityError when it does not verify."""
    pkg = path if path.is_dir() else path.parent
    manifest_path = pkg / MANIFEST_FILE
    if not path.exists() or not manifest_path.is_file():
        raise InvalidInput(f"{manifest_path} does not exist", reason="source-missing")
    manifest = manifest_path.read_bytes()
    sig_path = pkg / SIGNATURE_FILE
    signature = sig_path.read_bytes() if sig_path.is_file() else None
    signed = None
    if signature is not None:
        signed = check_signature(policy, signature)
        check_signed_manifest(signed, manifest)  # an altered manifest: before reading it
    parsed = parse_manifest(manifest)
    auth = authorize(
        policy,
        name=parsed.name,
        version=parsed.version,
        sha256=parsed.files[MODEL_FILE][0],  # checked against the file just below
        manifest=manifest,
        signature=signature,
        now=now,
    )
    if signed is not None:
        verify_files(pkg, policy, signed)
    else:
        _check_listed_files(pkg, parsed)
    return parsed, auth
