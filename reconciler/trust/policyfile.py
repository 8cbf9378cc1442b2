"""policy.yaml: the device owner's knobs, checked key by key with the file and key in every error.

Called by `reconciler.trust.policy.load_policy`, which reads the file and the keys beside it; this
module turns the parsed YAML mapping into `TrustPolicy` field values. Nothing is skipped or
defaulted silently: a knob the owner thinks is set but is not is a bad surprise.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler.core.errors import InvalidInput
from reconciler.trust.manifest import NAME_PATTERN, VERSION_PATTERN
from reconciler.trust.oms import Identity
from reconciler.trust.versions import DEFAULT_SCHEME, SCHEMES, parse_version

POLICY_KEYS = (
    "allow_unsigned",
    "allow_http",
    "min_version",
    "version_scheme",
    "allowed_domains",
    "max_model_bytes",
    "certificate_identities",
    "keyless_identities",
)


class TrustConfigError(InvalidInput):
    """The trust directory itself is unusable (a bad key file, a bad policy.yaml)."""

    reason = "trust-config"


def policy_values(path: Path, doc: Mapping[str, Any]) -> dict[str, Any]:
    """TrustPolicy keyword arguments from a policy.yaml mapping; TrustConfigError naming the key."""

    def bad(key: str, why: str) -> TrustConfigError:
        return TrustConfigError(f"{path}: {key}: {why}")

    for key in doc:
        if key not in POLICY_KEYS:
            raise bad(str(key), f"unknown key (known: {', '.join(POLICY_KEYS)})")
    scheme = doc.get("version_scheme", DEFAULT_SCHEME)
    if scheme not in SCHEMES:
        raise bad("version_scheme", f"{scheme!r} is not one of {', '.join(SCHEMES)}")
    out: dict[str, Any] = {"version_scheme": scheme}
    for key, value in doc.items():
        if key in ("allow_unsigned", "allow_http"):
            if not isinstance(value, bool):
                raise bad(key, f"must be true or false, not {value!r}")
            out[key] = value
        elif key == "min_version":
            out[key] = _floors(value, scheme, bad)
        elif key == "allowed_domains":
            if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
                raise bad(key, "must be a list of operator domain names")
            out[key] = tuple(value)
        elif key == "max_model_bytes":
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise bad(key, f"must be a positive number of bytes, not {value!r}")
            out[key] = value
        elif key == "certificate_identities":
            out[key] = _identities(value, bad)
        elif key == "keyless_identities" and value:
            raise bad(
                key,
                "Sigstore keyless verification (an OIDC identity and issuer, checked against "
                "Fulcio and Rekor) is reserved for a later release and not supported here; "
                "trust a public key (*.pub) or an X.509 root (*.crt) instead",
            )
    return out


def _floors(value: object, scheme: str, bad: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise bad("min_version", "must be a map of model name to version")
    floors = {}
    for model, floor in value.items():
        if isinstance(floor, int) and not isinstance(floor, bool):
            floor = str(floor)
        if not isinstance(model, str) or not NAME_PATTERN.fullmatch(model):
            raise bad(f"min_version.{model}", "not a model name")
        if not isinstance(floor, str) or not VERSION_PATTERN.fullmatch(floor):
            raise bad(f"min_version.{model}", f"{floor!r} is not a version label")
        try:
            parse_version(floor, scheme)
        except ValueError as e:
            raise bad(f"min_version.{model}", f"under version_scheme {scheme}: {e}") from e
        floors[model] = floor
    return floors


def _identities(value: object, bad: Any) -> tuple[Identity, ...]:
    key = "certificate_identities"
    if not isinstance(value, list):
        raise bad(key, "must be a list of {subject: ..., san: ...} entries")
    out = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict) or not entry or set(entry) - {"subject", "san"}:
            raise bad(f"{key}[{i}]", "must have subject and/or san, and nothing else")
        if not all(isinstance(v, str) and v for v in entry.values()):
            raise bad(f"{key}[{i}]", "subject and san must be non-empty strings")
        out.append(Identity(subject=entry.get("subject"), san=entry.get("san")))
    return tuple(out)
