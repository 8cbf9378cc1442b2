"""Version order for min_version: SemVer, PEP 440 and integers, as their publishers mean them."""

from __future__ import annotations

import pytest

from reconciler.trust.versions import compare_versions, parse_version

ORDER = [
    # (scheme, lower, higher)
    ("semver", "1.0-rc1", "1.0"),
    ("semver", "1.0", "1.0.1"),
    ("semver", "9", "10"),
    ("semver", "1.9", "1.10"),
    ("semver", "1.2", "1.2.1"),
    ("semver", "1.0.0-alpha", "1.0.0-alpha.1"),
    ("semver", "1.0.0-alpha.1", "1.0.0-alpha.beta"),
    ("semver", "1.0.0-alpha.beta", "1.0.0-beta"),
    ("semver", "1.0.0-beta.2", "1.0.0-beta.11"),
    ("semver", "1.0.0-beta.11", "1.0.0-rc.1"),
    ("semver", "1.0.0-rc.1", "1.0.0"),
    ("semver", "1.0-post1", "1.0"),  # SemVer: a pre-release, below the release
    ("semver", "2.0.0", "10.0.0"),
    ("pep440", "1.0rc1", "1.0"),
    ("pep440", "1.0-rc1", "1.0"),
    ("pep440", "1.0", "1.0.1"),
    ("pep440", "1.0", "1.0.post1"),  # PEP 440: a post-release, above it
    ("pep440", "1.0.dev1", "1.0a1"),
    ("pep440", "1.9", "1.10"),
    ("pep440", "1.0", "1.0+local.1"),
    ("integer", "9", "10"),
    ("integer", "2", "3"),
]

EQUAL = [
    ("semver", "1", "1.0.0"),
    ("semver", "1.0+build.5", "1.0+build.10"),  # build metadata has no precedence
    ("pep440", "1.0", "1.0.0"),
    ("pep440", "1.0RC1", "1.0rc1"),
    ("integer", "007", "7"),
]

UNPARSABLE = [
    ("semver", "01"),
    ("semver", "1.0.0.0"),
    ("semver", "latest"),
    ("semver", "1.0.0-rc.01"),
    ("semver", "v1.0"),
    ("pep440", "latest"),
    ("pep440", "1.0.0-alpha.beta"),
    ("integer", "1.0"),
    ("integer", "-1"),
]


@pytest.mark.parametrize(("scheme", "lower", "higher"), ORDER)
def test_order(scheme: str, lower: str, higher: str) -> None:
    assert compare_versions(lower, higher, scheme) == -1
    assert compare_versions(higher, lower, scheme) == 1


@pytest.mark.parametrize(("scheme", "a", "b"), EQUAL)
def test_equal(scheme: str, a: str, b: str) -> None:
    assert compare_versions(a, b, scheme) == 0


@pytest.mark.parametrize(("scheme", "version"), UNPARSABLE)
def test_unparsable_is_an_error_never_a_guess(scheme: str, version: str) -> None:
    with pytest.raises(ValueError, match=repr(version)):
        parse_version(version, scheme)
    with pytest.raises(ValueError):
        compare_versions(version, "1", scheme)


def test_the_default_scheme_is_semver_and_an_unknown_one_is_refused() -> None:
    assert compare_versions("1.0-rc1", "1.0") == -1
    with pytest.raises(ValueError, match="unknown version scheme"):
        parse_version("1", "calver")
