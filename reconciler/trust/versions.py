"""Version order for `min_version`: what a publisher means by "newer", chosen by the device policy.

Called by `reconciler.trust.policy` (the anti-rollback floor, and checking the floors of a
policy.yaml as it loads). Pure. Three schemes, `version_scheme:` in policy.yaml:

- `semver` (the default): SemVer 2.0.0 precedence. `1.0.0-rc.1` < `1.0.0` < `1.0.1`; numeric
  parts compare as numbers; build metadata (`+build.5`) is ignored. Shortened versions are
  accepted and padded with zeros (`3` is `3.0.0`, `1.2` is `1.2.0`), because many model
  versions are plain counters; so are a pre-release written straight after them
  (`1.0-rc1` is `1.0.0-rc1`). Leading zeros (`01`) are not SemVer and are refused.
- `pep440`: Python packaging's order (`packaging.version`), e.g. `1.0rc1` < `1.0` < `1.0.post1`.
- `integer`: the version is a non-negative integer.

A version the scheme cannot read is never placed by guesswork: `parse_version` raises
`ValueError` with the reason, and the policy refuses the version when a floor applies to it.

No SemVer library is installed, and `packaging` is PEP 440, whose order differs (it reads
`1.0-post1` as a post-release above 1.0, SemVer as a pre-release below it, and cannot read
`1.0.0-alpha.beta`), so the SemVer comparator is the spec's few rules, here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

SCHEMES = ("semver", "pep440", "integer")
DEFAULT_SCHEME = "semver"

_IDENT = r"[0-9A-Za-z-]+"
_NUMBER = r"0|[1-9][0-9]*"
_SEMVER = re.compile(
    rf"^(?P<core>(?:{_NUMBER})(?:\.(?:{_NUMBER})){{0,2}})"
    rf"(?:-(?P<pre>{_IDENT}(?:\.{_IDENT})*))?"
    rf"(?:\+(?P<build>{_IDENT}(?:\.{_IDENT})*))?$"
)


def _semver_key(version: str) -> tuple[Any, ...]:
    m = _SEMVER.match(version)
    if m is None:
        raise ValueError(
            f"{version!r} is not a SemVer version like 1.2.3, 1.2.3-rc.1 or 3 "
            "(set version_scheme in policy.yaml if these versions follow another scheme)"
        )
    core = [int(p) for p in m.group("core").split(".")]
    core += [0] * (3 - len(core))
    pre = m.group("pre")
    if pre is None:
        # a release ranks above every pre-release of the same core version
        return (*core, 1, ())
    idents = []
    for ident in pre.split("."):
        if ident.isdigit():
            if len(ident) > 1 and ident.startswith("0"):
                raise ValueError(f"{version!r}: pre-release part {ident!r} has a leading zero")
            idents.append((0, int(ident), ""))  # numeric identifiers rank below alphanumeric
        else:
            idents.append((1, 0, ident))  # ASCII order, as SemVer says
    return (*core, 0, tuple(idents))


def _pep440_key(version: str) -> Any:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version)
    except InvalidVersion as e:
        raise ValueError(f"{version!r} is not a PEP 440 version like 1.0, 1.0rc1 or 2!1.0") from e


def _integer_key(version: str) -> int:
    if not (version.isascii() and version.isdigit()):
        raise ValueError(f"{version!r} is not a non-negative integer")
    return int(version)


_KEYS: dict[str, Callable[[str], Any]] = {
    "semver": _semver_key,
    "pep440": _pep440_key,
    "integer": _integer_key,
}


def parse_version(version: str, scheme: str = DEFAULT_SCHEME) -> Any:
    """A sort key for `version` under `scheme`; ValueError saying why it cannot be read."""
    try:
        key_of = _KEYS[scheme]
    except KeyError:
        raise ValueError(
            f"unknown version scheme {scheme!r} (known: {', '.join(SCHEMES)})"
        ) from None
    return key_of(version)


def compare_versions(a: str, b: str, scheme: str = DEFAULT_SCHEME) -> int:
    """-1, 0 or 1 as `a` is below, equal to or above `b`; ValueError when either is unreadable."""
    ka, kb = parse_version(a, scheme), parse_version(b, scheme)
    return (ka > kb) - (ka < kb)
