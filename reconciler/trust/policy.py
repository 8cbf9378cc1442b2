"""The device's trust policy and the one decision made with it: may these bytes be served?

Two halves, kept apart on purpose (the python-tuf shape):

- `load_policy(trust_dir)` is the only I/O here. It reads the device-local trust directory
  (`<state-dir>/trust/` or `--trust-dir`): every `*.pub` (ed25519 SubjectPublicKeyInfo PEM) is a
  trusted publisher key, and an optional `policy.yaml` sets the few knobs below. Nothing in it
  ever comes from desired state: whoever can push to the GitOps repo can choose *which* signed
  version to run, never *whose* signature counts nor whether signatures are needed.
- `authorize(policy, ...)` is pure: bytes and values in, an `Authorization` value out or an
  `IntegrityError` with a stable `reason`. The verify step calls it with the desired name,
  version and sha256 and the fetched `manifest.json` / `manifest.json.sig` bytes; the journal
  records the returned value (key id and manifest digest) as who authorised the version.

policy.yaml (every key optional; anything else is an error naming file and key):

    allow_unsigned: false       # true: serve models without a signed manifest (flagged loudly)
    allow_http: false           # true: plain http:// sources are acceptable
    min_version: {classifier: "3"}   # refuse versions below this, signed or not
    allowed_domains: []         # extra ONNX operator domains accepted besides the standard ones
    max_model_bytes: 2147483648

Version order (for `min_version`): split both versions on `.`, `-` and `+`; compare part by
part, numerically when both parts are digits ("10" > "9", "01" == "1"), otherwise as strings,
with a numeric part below a non-numeric one; when one runs out first, the shorter is lower
("1.2" < "1.2.1"). So "2" < "10", "1.9" < "1.10", "1.0-rc1" > "1.0".
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from reconciler.core.errors import IntegrityError, InvalidInput
from reconciler.trust.manifest import (
    MODEL_FILE,
    NAME_PATTERN,
    VERSION_PATTERN,
    parse_manifest,
    parse_time,
)
from reconciler.trust.signing import key_id, parse_signatures, public_key_from_pem

POLICY_FILE = "policy.yaml"
DEFAULT_MAX_MODEL_BYTES = 2 << 30  # 2 GiB
_POLICY_KEYS = ("allow_unsigned", "allow_http", "min_version", "allowed_domains", "max_model_bytes")


class TrustConfigError(InvalidInput):
    """The trust directory itself is unusable (a bad key file, a bad policy.yaml)."""

    reason = "trust-config"


@dataclass(frozen=True)
class TrustPolicy:
    keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)  # key id -> key
    allow_unsigned: bool = False
    allow_http: bool = False
    min_version: dict[str, str] = field(default_factory=dict)  # model name -> lowest version
    allowed_domains: tuple[str, ...] = ()
    max_model_bytes: int = DEFAULT_MAX_MODEL_BYTES
    source: str = "(built-in defaults)"  # where it was loaded from, for messages

    def to_json(self) -> dict[str, Any]:
        """What `hotswap status` can show: everything but the key material."""
        return {
            "source": self.source,
            "keyids": sorted(self.keys),
            "allow_unsigned": self.allow_unsigned,
            "allow_http": self.allow_http,
            "min_version": dict(sorted(self.min_version.items())),
            "allowed_domains": list(self.allowed_domains),
            "max_model_bytes": self.max_model_bytes,
        }


@dataclass(frozen=True)
class Authorization:
    """Who or what allowed a version to be served; the journal keeps `to_json()`."""

    signed: bool
    keyid: str | None = None  # the trusted key whose signature verified
    manifest_sha256: str | None = None  # sha256 of the exact manifest.json bytes
    expires: str | None = None
    unsigned_opt_in: bool = False  # True: served only because policy.yaml allows unsigned
    size: int | None = None  # the model file's size as the manifest states it: the fetch cap

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --- pure core -------------------------------------------------------------------------------


def _version_key(version: str) -> list[tuple[int, int, str]]:
    return [
        (0, int(part), "") if part.isascii() and part.isdigit() else (1, 0, part)
        for part in re.split(r"[.+-]", version)
    ]


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as `a` is below, equal to or above `b` (rule in the module docstring)."""
    ka, kb = _version_key(a), _version_key(b)
    return (ka > kb) - (ka < kb)


def check_signatures(policy: TrustPolicy, manifest: bytes, signature: bytes) -> str:
    """The key id of a trusted key whose signature verifies; IntegrityError otherwise.

    Signatures by keys the device does not know are ignored (they cannot be checked; a
    rollover carries old and new side by side); a signature by a trusted key that does not
    verify is refused outright, even when another trusted key's verifies."""
    entries = parse_signatures(signature)
    trusted = [(kid, sig) for kid, sig in entries if kid in policy.keys]
    if not trusted:
        seen = sorted({kid for kid, _ in entries})
        if not policy.keys:
            raise IntegrityError(
                f"signed by {seen}, but there are no trusted keys in {policy.source}: copy the "
                "publisher's hotswap.pub there (hotswap keygen makes one)",
                reason="untrusted-key",
            )
        raise IntegrityError(
            f"no signature by a trusted key: signed by {seen}, {policy.source} trusts {sorted(policy.keys)}",
            reason="untrusted-key",
        )
    for kid, sig in trusted:
        try:
            policy.keys[kid].verify(sig, manifest)
        except InvalidSignature as e:
            raise IntegrityError(
                f"the signature by trusted key {kid} does not verify: manifest or signature was altered",
                reason="bad-signature",
            ) from e
    return trusted[0][0]


def _check_min_version(policy: TrustPolicy, name: str, version: str) -> None:
    floor = policy.min_version.get(name)
    if floor is not None and compare_versions(version, floor) < 0:
        raise IntegrityError(
            f"version {version} of {name} is below min_version {floor} set in {policy.source}: downgrade refused",
            reason="downgrade",
        )


def _without_manifest(
    policy: TrustPolicy, name: str, version: str, signature: bytes | None
) -> Authorization:
    if signature is not None:
        raise IntegrityError(
            "invalid manifest: a signature without its manifest.json", reason="manifest-invalid"
        )
    if not policy.allow_unsigned:
        raise IntegrityError(
            f"{name} v{version} has no signed manifest and {policy.source} requires one: "
            "publish it with `hotswap publish` and set spec.model.manifest (the device "
            f"trusts the hotswap.pub files in {policy.source}), or, not recommended, set "
            f"allow_unsigned: true in {policy.source}/policy.yaml",
            reason="unsigned",
        )
    _check_min_version(policy, name, version)
    return Authorization(signed=False, unsigned_opt_in=True)


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

    `manifest`/`signature` are the exact bytes of manifest.json and manifest.json.sig, None when
    absent. `now` must be timezone-aware. Raises IntegrityError with reason unsigned,
    bad-signature, untrusted-key, manifest-invalid, manifest-mismatch, expired or downgrade."""
    if now.tzinfo is None:
        raise ValueError("authorize() needs a timezone-aware `now`")
    if manifest is None:
        return _without_manifest(policy, name, version, signature)
    keyid: str | None = None
    if signature is not None:
        keyid = check_signatures(policy, manifest, signature)
    elif not policy.allow_unsigned:
        raise IntegrityError(
            f"{name} v{version}: the manifest has no manifest.json.sig and {policy.source} requires a signature",
            reason="unsigned",
        )
    parsed = parse_manifest(manifest)
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
    if parsed.expires is not None and parse_time(parsed.expires) <= now:
        raise IntegrityError(
            f"the manifest of {name} v{version} expired at {parsed.expires}", reason="expired"
        )
    _check_min_version(policy, name, version)
    return Authorization(
        signed=keyid is not None,
        keyid=keyid,
        manifest_sha256=hashlib.sha256(manifest).hexdigest(),
        expires=parsed.expires,
        unsigned_opt_in=keyid is None,
        size=parsed.files["model.onnx"][1] if "model.onnx" in parsed.files else None,
    )


# --- loading (the only I/O) ------------------------------------------------------------------


def _policy_values(path: Path, doc: Mapping[str, Any]) -> dict[str, Any]:
    def bad(key: str, why: str) -> TrustConfigError:
        return TrustConfigError(f"{path}: {key}: {why}")

    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key not in _POLICY_KEYS:
            raise bad(str(key), f"unknown key (known: {', '.join(_POLICY_KEYS)})")
        if key in ("allow_unsigned", "allow_http"):
            if not isinstance(value, bool):
                raise bad(key, f"must be true or false, not {value!r}")
            out[key] = value
        elif key == "min_version":
            if not isinstance(value, dict):
                raise bad(key, "must be a map of model name to version")
            floors = {}
            for model, floor in value.items():
                if isinstance(floor, int) and not isinstance(floor, bool):
                    floor = str(floor)
                if not isinstance(model, str) or not NAME_PATTERN.fullmatch(model):
                    raise bad(f"{key}.{model}", "not a model name")
                if not isinstance(floor, str) or not VERSION_PATTERN.fullmatch(floor):
                    raise bad(f"{key}.{model}", f"{floor!r} is not a version label")
                floors[model] = floor
            out[key] = floors
        elif key == "allowed_domains":
            if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
                raise bad(key, "must be a list of operator domain names")
            out[key] = tuple(value)
        else:  # max_model_bytes
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise bad(key, f"must be a positive number of bytes, not {value!r}")
            out[key] = value
    return out


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
    keys: dict[str, Ed25519PublicKey] = {}
    for pub in sorted(trust_dir.glob("*.pub")):
        try:
            key = public_key_from_pem(pub.read_bytes(), str(pub))
        except OSError as e:
            raise TrustConfigError(f"{pub}: cannot read: {e.strerror}") from e
        except ValueError as e:
            raise TrustConfigError(str(e)) from e
        keys[key_id(key)] = key
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
        values = _policy_values(policy_path, doc or {})
    return TrustPolicy(keys=keys, source=source, **values)
