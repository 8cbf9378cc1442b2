"""The device's trust policy and the one decision made with it: may these bytes be served?

Two halves, kept apart on purpose (the python-tuf shape):

- `load_policy(trust_dir)` is the only I/O here. It reads the device-local trust directory
  (`<state-dir>/trust/` or `--trust-dir`): every `*.pub` (an ECDSA P-256/P-384 public key, PEM)
  is a trusted publisher key, every `*.crt` (PEM) a trusted X.509 root for certificate-signed
  packages, and an optional `policy.yaml` sets the knobs below. Nothing in it ever comes from
  desired state: whoever can push to the GitOps repo can choose *which* signed version to run,
  never *whose* signature counts nor whether signatures are needed.
- `authorize(policy, ...)` is pure: bytes and values in, an `Authorization` value out or an
  `IntegrityError` with a stable `reason`. The verify step calls it with the desired name,
  version and sha256 and the fetched `manifest.json` / `model.sig` bytes, before any model byte
  is fetched; the journal records the returned value (signer and manifest digest).

A package is a directory signed as a whole with OpenSSF model signing (`reconciler.trust.oms`):
`model.sig` lists every file with its sha256. The device checks the two it uses against that
list: `manifest.json` (name, version, sizes, expiry: so a validly signed old model cannot be
relabelled) and the model, whose signed sha256 must be the one desired state pins. The model is
hashed once, by the download into the content-addressed store, never again here.

policy.yaml (every key optional; anything else is an error naming file and key):

    allow_unsigned: false       # true: serve models without a signed manifest (flagged loudly)
    allow_http: false           # true: plain http:// sources are acceptable
    min_version: {classifier: "3"}   # refuse versions below this, signed or not
    version_scheme: semver      # how min_version orders versions: semver | pep440 | integer
    allowed_domains: []         # extra ONNX operator domains accepted besides the standard ones
    max_model_bytes: 2147483648
    certificate_identities:     # certificate-signed packages: the signer must match one entry
      - {subject: "CN=ci,O=Example", san: "ci@example.com"}
    keyless_identities: []      # reserved for Sigstore keyless; refused by this release
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.core.errors import IntegrityError
from reconciler.trust.manifest import (
    MANIFEST_FILE,
    MODEL_FILE,
    SIGNATURE_FILE,
    Manifest,
    parse_manifest,
    parse_time,
)
from reconciler.trust.oms import (
    Identity,
    RetiredKeyFormat,
    SignedSet,
    TrustedKey,
    TrustedRoots,
    load_trusted_key,
    load_trusted_roots,
    verify_bundle,
)
from reconciler.trust.policyfile import POLICY_KEYS, TrustConfigError, policy_values
from reconciler.trust.versions import DEFAULT_SCHEME, compare_versions

__all__ = ["POLICY_KEYS", "Authorization", "TrustConfigError", "TrustPolicy", "authorize"]

POLICY_FILE = "policy.yaml"
DEFAULT_MAX_MODEL_BYTES = 2 << 30  # 2 GiB


@dataclass(frozen=True)
class TrustPolicy:
    keys: dict[str, TrustedKey] = field(default_factory=dict)  # OMS key hint -> key
    roots: TrustedRoots | None = None
    certificate_identities: tuple[Identity, ...] = ()
    allow_unsigned: bool = False
    allow_http: bool = False
    min_version: dict[str, str] = field(default_factory=dict)  # model name -> lowest version
    version_scheme: str = DEFAULT_SCHEME
    allowed_domains: tuple[str, ...] = ()
    max_model_bytes: int = DEFAULT_MAX_MODEL_BYTES
    retired_keys: tuple[str, ...] = ()  # why each ignored *.pub (the former ed25519 format) is
    source: str = "(built-in defaults)"  # where it was loaded from, for messages

    def to_json(self) -> dict[str, Any]:
        """What `hotswap status` can show (and what the authorization cache is keyed on)."""
        return {
            "source": self.source,
            "keyids": sorted(k.keyid for k in self.keys.values()),
            "roots": [f[:16] for f in self.roots.fingerprints] if self.roots else [],
            "certificate_identities": [asdict(i) for i in self.certificate_identities],
            "allow_unsigned": self.allow_unsigned,
            "allow_http": self.allow_http,
            "min_version": dict(sorted(self.min_version.items())),
            "version_scheme": self.version_scheme,
            "allowed_domains": list(self.allowed_domains),
            "max_model_bytes": self.max_model_bytes,
            "retired_keys": list(self.retired_keys),
        }


@dataclass(frozen=True)
class Authorization:
    """Who or what allowed a version to be served; the journal keeps `to_json()`."""

    signed: bool
    keyid: str | None = None  # the trusted key, or the signing certificate's sha256 prefix
    manifest_sha256: str | None = None  # sha256 of the exact manifest.json bytes
    expires: str | None = None
    unsigned_opt_in: bool = False  # True: served only because policy.yaml allows unsigned
    size: int | None = None  # the model file's size as the manifest states it: the fetch cap
    signer: str | None = None  # "key <id>" or "certificate <subject>", for people

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --- pure core -------------------------------------------------------------------------------


def check_signature(policy: TrustPolicy, signature: bytes) -> SignedSet:
    """The files a trusted signer vouches for in `model.sig`; IntegrityError otherwise."""
    return verify_bundle(
        signature, policy.keys, policy.roots, policy.certificate_identities, policy.source
    )


def _check_min_version(policy: TrustPolicy, name: str, version: str) -> None:
    floor = policy.min_version.get(name)
    if floor is None:
        return
    try:
        below = compare_versions(version, floor, policy.version_scheme) < 0
    except ValueError as e:
        raise IntegrityError(
            f"version {version} of {name} cannot be ordered against min_version {floor} set in "
            f"{policy.source} (version_scheme {policy.version_scheme}): {e}; refused rather "
            "than guessed",
            reason="version-unparsable",
        ) from e
    if below:
        raise IntegrityError(
            f"version {version} of {name} is below min_version {floor} set in {policy.source}: downgrade refused",
            reason="downgrade",
        )


def _without_manifest(
    policy: TrustPolicy, name: str, version: str, signature: bytes | None
) -> Authorization:
    if signature is not None:
        raise IntegrityError(
            f"invalid manifest: a {SIGNATURE_FILE} without its {MANIFEST_FILE}",
            reason="manifest-invalid",
        )
    if not policy.allow_unsigned:
        raise IntegrityError(
            f"{name} v{version} has no signed manifest and {policy.source} requires one: "
            "publish it with `hotswap publish` (or sign the package directory with "
            "`model_signing sign`) and set spec.model.manifest (the device trusts the *.pub "
            f"keys and *.crt roots in {policy.source}), or, not recommended, set "
            f"allow_unsigned: true in {policy.source}/policy.yaml",
            reason="unsigned",
        )
    _check_min_version(policy, name, version)
    return Authorization(signed=False, unsigned_opt_in=True)


def _signed_sha256(signed: SignedSet, fname: str) -> str:
    """The sha256 the signature gives `fname`; unsupported-signature when it gives none."""
    entry = signed.files.get(fname)
    if entry is not None and entry[0] == "sha256" and signed.method == "files":
        return entry[1].lower()
    if entry is None and signed.method == "files":
        raise IntegrityError(
            f"{fname} is not among the files {SIGNATURE_FILE} signs ({sorted(signed.files)[:8]})",
            reason="manifest-mismatch",
        )
    raise IntegrityError(
        f"{SIGNATURE_FILE} signs {fname} as {signed.method} with {entry[0] if entry else '?'}: "
        "the device needs whole files hashed with sha256 (model_signing's default "
        "serialization; no --shard or blake hashing)",
        reason="unsupported-signature",
    )


def check_signed_manifest(signed: SignedSet, manifest: bytes) -> None:
    """manifest.json must be the very file the signature vouches for: checked before parsing."""
    if hashlib.sha256(manifest).hexdigest() != _signed_sha256(signed, MANIFEST_FILE):
        raise IntegrityError(
            f"{MANIFEST_FILE} is not the one {SIGNATURE_FILE} signs (signed by "
            f"{signed.signer}): the manifest or the signature was altered",
            reason="bad-signature",
        )


def _check_signed_files(signed: SignedSet, files: dict[str, tuple[str, int]]) -> None:
    """Every file the manifest lists must have the sha256 the signature gives it."""
    for fname, (sha, _) in sorted(files.items()):
        if _signed_sha256(signed, fname) != sha:
            raise IntegrityError(
                f"invalid manifest: {fname} has sha256 {sha} in {MANIFEST_FILE} and another "
                f"in {SIGNATURE_FILE}",
                reason="manifest-invalid",
            )


def _check_binding(parsed: Manifest, name: str, version: str, sha256: str) -> None:
    """The manifest must name what desired state asks for: no relabelling, no mix and match."""
    if (parsed.name, parsed.version) != (name, version):
        raise IntegrityError(
            f"the manifest is for {parsed.name} v{parsed.version}, desired state asks for {name} v{version}",
            reason="manifest-mismatch",
        )
    signed_sha = parsed.files[MODEL_FILE][0]
    if signed_sha != sha256.lower():
        raise IntegrityError(
            f"the manifest of {name} v{version} pins {MODEL_FILE} sha256 {signed_sha}, desired state pins {sha256}",
            reason="manifest-mismatch",
        )


def authorize(
    policy: TrustPolicy,
    *,
    name: str,
    version: str,
    sha256: str,
    manifest: bytes | None,
    signature: bytes | None,
    now: datetime,
) -> Authorization:
    """May the model pinned by desired state (name, version, sha256) be served? Pure.

    `manifest`/`signature` are the exact bytes of manifest.json and model.sig, None when
    absent. `now` must be timezone-aware. Raises IntegrityError with reason unsigned,
    bad-signature, untrusted-key, unsupported-signature, manifest-invalid, manifest-mismatch,
    expired, downgrade or version-unparsable."""
    if now.tzinfo is None:
        raise ValueError("authorize() needs a timezone-aware `now`")
    if manifest is None:
        return _without_manifest(policy, name, version, signature)
    signed: SignedSet | None = None
    if signature is not None:
        signed = check_signature(policy, signature)  # before trusting a byte of the manifest
        check_signed_manifest(signed, manifest)
    elif not policy.allow_unsigned:
        raise IntegrityError(
            f"{name} v{version}: the manifest has no {SIGNATURE_FILE} and {policy.source} requires a signature",
            reason="unsigned",
        )
    parsed = parse_manifest(manifest)
    if signed is not None:
        _check_signed_files(signed, parsed.files)
    _check_binding(parsed, name, version, sha256)
    if parsed.expires is not None and parse_time(parsed.expires) <= now:
        raise IntegrityError(
            f"the manifest of {name} v{version} expired at {parsed.expires}", reason="expired"
        )
    _check_min_version(policy, name, version)
    return Authorization(
        signed=signed is not None,
        keyid=signed.keyid if signed else None,
        manifest_sha256=hashlib.sha256(manifest).hexdigest(),
        expires=parsed.expires,
        unsigned_opt_in=signed is None,
        size=parsed.files[MODEL_FILE][1],
        signer=signed.signer if signed else None,
    )


# --- loading (the only I/O) ------------------------------------------------------------------


def _load_signers(
    trust_dir: Path,
) -> tuple[dict[str, TrustedKey], TrustedRoots | None, tuple[str, ...]]:
    keys: dict[str, TrustedKey] = {}
    retired: list[str] = []
    try:
        for pub in sorted(trust_dir.glob("*.pub")):
            try:
                key = load_trusted_key(pub)
            except RetiredKeyFormat as e:  # an upgraded device's old key: shown, never trusted
                retired.append(str(e))
                continue
            keys[key.hint] = key
        roots = load_trusted_roots(sorted(trust_dir.glob("*.crt")))
    except OSError as e:
        raise TrustConfigError(f"{e.filename}: cannot read: {e.strerror}") from e
    except ValueError as e:
        raise TrustConfigError(str(e)) from e
    return keys, roots, tuple(retired)


def load_policy(trust_dir: Path) -> TrustPolicy:
    """Read the device's trust directory. Missing = no keys and the defaults (signature required).

    TrustConfigError names the file (and key) when something in it is unusable; nothing is
    skipped silently, because a key the operator thinks is trusted but is not is a bad surprise."""
    import yaml

    source = str(trust_dir)
    if not trust_dir.exists():
        return TrustPolicy(source=source)
    if not trust_dir.is_dir():
        raise TrustConfigError(f"{trust_dir}: the trust directory is not a directory")
    keys, roots, retired = _load_signers(trust_dir)
    values: dict[str, Any] = {}
    policy_path = trust_dir / POLICY_FILE
    if policy_path.exists():
        try:
            doc = yaml.safe_load(policy_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            raise TrustConfigError(f"{policy_path}: cannot read: {e}") from e
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            raise TrustConfigError(f"{policy_path}{where}: not valid YAML: {e}") from e
        if doc is not None and not isinstance(doc, dict):
            raise TrustConfigError(f"{policy_path}: must be a mapping of policy keys")
        values = policy_values(policy_path, doc or {})
    return TrustPolicy(keys=keys, roots=roots, retired_keys=retired, source=source, **values)
