"""The trust core: every attack on a package gets refused with its own stable reason.

`authorize` is pure, so these tests build packages as bytes (a manifest and the OpenSSF model
signing bundle over a directory holding it and the model) like python-tuf's repository
simulator; the trust dirs they load are written to temporary directories.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core.canonical import canonical_bytes
from reconciler.core.errors import IntegrityError, InvalidInput
from reconciler.trust.manifest import make_manifest, parse_manifest
from reconciler.trust.oms import Identity, key_hint, key_id
from reconciler.trust.policy import (
    Authorization,
    TrustConfigError,
    TrustPolicy,
    authorize,
    load_policy,
)
from reconciler.trust.signing import public_pem
from tests.support.signed import make_leaf, make_root, new_key, sign_files, trust_dir, trusting

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
MODELS = {b"model version 1", b"model version 2"}
BY_SHA = {hashlib.sha256(m).hexdigest(): m for m in MODELS}
SHA1 = hashlib.sha256(b"model version 1").hexdigest()
SHA2 = hashlib.sha256(b"model version 2").hexdigest()
PUBLISHER = new_key()
OTHER = new_key()


def policy(*keys: Any, **kw: Any) -> TrustPolicy:
    return replace(trusting(keys), source="trust", **kw)


def package(
    name: str = "classifier",
    version: str = "1",
    sha: str = SHA1,
    key: Any = PUBLISHER,
    expires: datetime | None = None,
    created: datetime = NOW - timedelta(days=1),
) -> tuple[bytes, bytes]:
    """(manifest.json, model.sig) of a package holding the model whose sha256 is `sha`."""
    doc = make_manifest(name, version, {"model.onnx": (sha, 15)}, None, expires, created)
    data = canonical_bytes(doc)
    return data, sign_files({"manifest.json": data, "model.onnx": BY_SHA[sha]}, key)


def check(
    pol: TrustPolicy,
    pkg: tuple[bytes | None, bytes | None],
    name: str = "classifier",
    version: str = "1",
    sha: str = SHA1,
    now: datetime = NOW,
) -> Authorization:
    return authorize(
        pol, name=name, version=version, sha256=sha, manifest=pkg[0], signature=pkg[1], now=now
    )


def refused(reason: str, *args: Any, **kw: Any) -> IntegrityError:
    with pytest.raises(IntegrityError) as info:
        check(*args, **kw)
    assert info.value.reason == reason, str(info.value)
    return info.value


def test_a_signed_package_is_authorized_and_says_by_whom() -> None:
    manifest, sig = package(expires=NOW + timedelta(days=30))
    auth = check(policy(PUBLISHER), (manifest, sig))
    assert auth == Authorization(
        signed=True,
        keyid=key_id(PUBLISHER.public_key()),
        manifest_sha256=hashlib.sha256(manifest).hexdigest(),
        expires="2026-01-31T12:00:00Z",
        size=15,  # the manifest's model size: the daemon's download cap
        unsigned_opt_in=False,
        signer=f"key {key_id(PUBLISHER.public_key())}",
    )
    assert json.loads(json.dumps(auth.to_json()))["keyid"] == auth.keyid


def _with_signature(bundle: bytes, mutate: Any) -> bytes:
    doc = json.loads(bundle)
    entry = doc["dsseEnvelope"]["signatures"][0]
    entry["sig"] = base64.b64encode(mutate(base64.b64decode(entry["sig"]))).decode()
    return json.dumps(doc).encode()


def test_a_flipped_byte_in_the_signature_is_a_bad_signature() -> None:
    manifest, sig = package()

    def flip(raw: bytes) -> bytes:
        flipped = bytearray(raw)
        flipped[10] ^= 0x01
        return bytes(flipped)

    refused("bad-signature", policy(PUBLISHER), (manifest, _with_signature(sig, flip)))


def test_a_flipped_byte_in_the_manifest_is_a_bad_signature() -> None:
    manifest, sig = package()
    tampered = manifest.replace(b'"version":"1"', b'"version":"2"')
    refused("bad-signature", policy(PUBLISHER), (tampered, sig), version="2")


def test_a_signature_by_an_untrusted_key_is_refused_and_names_both_sides() -> None:
    err = refused("untrusted-key", policy(PUBLISHER), package(key=OTHER))
    assert key_id(OTHER.public_key()) in str(err) and key_id(PUBLISHER.public_key()) in str(err)


def test_a_foreign_signature_under_a_trusted_keys_hint_is_a_bad_signature() -> None:
    manifest, sig = package(key=OTHER)
    doc = json.loads(sig)
    doc["verificationMaterial"]["publicKey"]["hint"] = key_hint(PUBLISHER.public_key())
    refused("bad-signature", policy(PUBLISHER), (manifest, json.dumps(doc).encode()))


ROOT = make_root()
LEAF = make_leaf(ROOT, cn="publisher", san="ci@example.com")


def _certificate_package() -> tuple[bytes, bytes]:
    manifest, _ = package()
    files = {"manifest.json": manifest, "model.onnx": BY_SHA[SHA1]}
    return manifest, sign_files(files, LEAF.key, LEAF.pem, ROOT.pem)


def test_a_certificate_signed_package_needs_a_trusted_root_and_a_matching_identity() -> None:
    pkg = _certificate_package()
    auth = check(trusting(roots=[ROOT.pem]), pkg)
    assert auth.signed and auth.signer == "certificate O=Example,CN=publisher"
    err = refused("untrusted-key", policy(PUBLISHER), pkg)
    assert "no trusted root certificate (*.crt) in trust" in str(err)
    refused("untrusted-key", trusting(roots=[make_root("Other CA").pem]), pkg)
    pinned = replace(trusting(roots=[ROOT.pem]), certificate_identities=(Identity(san="x@y"),))
    refused("untrusted-key", pinned, pkg)
    ok = (Identity(subject="O=Example,CN=publisher", san="ci@example.com"),)
    assert check(replace(pinned, certificate_identities=ok), pkg).signed


def test_a_sigstore_keyless_bundle_is_refused_as_unsupported_not_trusted() -> None:
    manifest, sig = _certificate_package()
    doc = json.loads(sig)
    material = doc["verificationMaterial"]
    leaf = material.pop("x509CertificateChain")["certificates"][0]
    material["certificate"] = leaf  # the v0.3 keyless form: one Fulcio certificate
    err = refused(
        "unsupported-signature", trusting(roots=[ROOT.pem]), (manifest, json.dumps(doc).encode())
    )
    assert "keyless" in str(err)


def test_no_trusted_keys_tells_the_operator_what_to_do() -> None:
    err = refused("untrusted-key", TrustPolicy(source="state/trust"), package())
    assert "no trusted keys in state/trust: copy the publisher's hotswap.pub there" in str(err)
    assert "hotswap keygen" in str(err)


@pytest.mark.parametrize(
    ("pkg_kw", "desired_kw"),
    [
        ({"name": "detector"}, {}),  # a manifest for another model
        ({}, {"version": "2"}),  # an old model relabelled as a new version
        ({"version": "2"}, {}),  # a newer manifest used for an older desired version
        ({}, {"sha": SHA2}),  # the manifest pins other bytes (mix and match)
        ({"sha": SHA2}, {"version": "1"}),
    ],
)
def test_a_manifest_that_does_not_match_desired_state_is_refused(
    pkg_kw: dict[str, Any], desired_kw: dict[str, Any]
) -> None:
    err = refused("manifest-mismatch", policy(PUBLISHER), package(**pkg_kw), **desired_kw)
    assert "desired state" in str(err)


def test_an_expired_manifest_is_refused() -> None:
    pkg = package(expires=NOW)
    refused("expired", policy(PUBLISHER), pkg)  # expires == now counts as expired
    assert check(policy(PUBLISHER), pkg, now=NOW - timedelta(seconds=1)).expires is not None


def test_a_version_below_min_version_is_a_downgrade() -> None:
    pol = policy(PUBLISHER, min_version={"classifier": "9"})
    err = refused("downgrade", pol, package(version="8"), version="8")
    assert "min_version 9" in str(err)
    assert check(pol, package(version="9"), version="9").signed
    assert check(pol, package(version="10"), version="10").signed  # numeric, not "10" < "9"
    assert check(pol, package(name="other", version="1"), name="other").signed


def test_a_release_candidate_is_below_its_release_under_the_default_scheme() -> None:
    pol = policy(PUBLISHER, min_version={"classifier": "1.0"})
    refused("downgrade", pol, package(version="1.0-rc1"), version="1.0-rc1")
    assert check(pol, package(version="1.0.1"), version="1.0.1").signed


def test_an_unparsable_version_under_a_floor_is_refused_not_guessed() -> None:
    pol = policy(PUBLISHER, min_version={"classifier": "2"}, version_scheme="integer")
    err = refused("version-unparsable", pol, package(version="2.1"), version="2.1")
    assert "version_scheme integer" in str(err) and "not a non-negative integer" in str(err)
    assert check(policy(PUBLISHER), package(version="latest"), version="latest").signed  # no floor


def test_unsigned_is_refused_by_default() -> None:
    err = refused("unsigned", policy(PUBLISHER), (None, None))
    assert "allow_unsigned" in str(err)
    manifest, _ = package()
    refused("unsigned", policy(PUBLISHER), (manifest, None))  # a manifest alone is not signed


def test_unsigned_with_the_device_opt_in_is_allowed_and_flagged() -> None:
    auth = check(policy(allow_unsigned=True), (None, None))
    assert auth == Authorization(signed=False, unsigned_opt_in=True)
    manifest, _ = package()
    auth = check(policy(allow_unsigned=True), (manifest, None))
    assert not auth.signed and auth.unsigned_opt_in
    assert auth.manifest_sha256 == hashlib.sha256(manifest).hexdigest()


def test_the_opt_in_does_not_excuse_a_manifest_that_is_present_but_bad() -> None:
    pol = policy(PUBLISHER, allow_unsigned=True)
    manifest, sig = package()
    refused("bad-signature", pol, (manifest.replace(b'"1"', b'"2"'), sig), version="2")
    refused("untrusted-key", pol, package(key=OTHER))
    refused("manifest-mismatch", pol, (manifest, None), version="2")
    refused("bad-signature", pol, (manifest, b"not json"))


def test_min_version_applies_to_unsigned_models_too() -> None:
    pol = policy(allow_unsigned=True, min_version={"classifier": "3"})
    refused("downgrade", pol, (None, None), version="2")
    assert check(pol, (None, None), version="3").unsigned_opt_in


def test_rotation_a_device_trusting_old_and_new_key_accepts_either() -> None:
    old, new = package(key=PUBLISHER), package(key=OTHER)
    during = policy(PUBLISHER, OTHER)
    assert check(during, old).keyid == key_id(PUBLISHER.public_key())
    assert check(during, new).keyid == key_id(OTHER.public_key())
    refused("untrusted-key", policy(OTHER), old)  # the old key removed: re-sign what is deployed


def test_a_bundle_carries_one_signature_and_a_forged_one_spoils_it() -> None:
    manifest, sig = package()
    doc = json.loads(sig)
    forged = dict(doc["dsseEnvelope"]["signatures"][0])
    forged["sig"] = json.loads(package(key=OTHER)[1])["dsseEnvelope"]["signatures"][0]["sig"]
    doc["dsseEnvelope"]["signatures"].insert(0, forged)  # the verifier checks the first
    refused("bad-signature", policy(PUBLISHER), (manifest, json.dumps(doc).encode()))


@pytest.mark.parametrize(
    "sig",
    [
        b"",
        b"[]",
        b'{"signatures": []}',
        b'{"signatures": [{"keyid": "x", "sig": "AAAA"}]}',
        b'{"signatures": [{"keyid": "0123456789abcdef", "sig": "!!"}]}',
        b'{"signatures": [{"keyid": "0123456789abcdef", "sig": "AAAA"}]}',
        b'{"signatures": [], "extra": 1}',
        b"\xff\xfe",
        b'{"verificationMaterial": {}}',
        b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",'
        b' "verificationMaterial": {"publicKey": {"hint": "ab"}}, "dsseEnvelope": {}}',
        b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",'
        b' "verificationMaterial": {"publicKey": {"hint": "ab"}}, "dsseEnvelope":'
        b' {"payload": "e30=", "payloadType": "x", "signatures": [{"sig": "AAA", "keyid": ""}]}}',
    ],
)
def test_a_malformed_signature_file_is_a_bad_signature(sig: bytes) -> None:
    manifest, _ = package()
    refused("bad-signature", policy(PUBLISHER), (manifest, sig))


def _signed(doc_bytes: bytes) -> tuple[bytes, bytes]:
    return doc_bytes, sign_files(
        {"manifest.json": doc_bytes, "model.onnx": BY_SHA[SHA1]}, PUBLISHER
    )


def test_a_validly_signed_manifest_must_still_be_canonical_and_well_formed() -> None:
    manifest, _ = package()
    doc = json.loads(manifest)
    pretty = json.dumps(doc, indent=2, sort_keys=True).encode()
    refused("manifest-invalid", policy(PUBLISHER), _signed(pretty))
    for mutate in (
        lambda d: d.update(kind="ModelDeployment"),
        lambda d: d.update(extra=1),
        lambda d: d["files"].pop("model.onnx"),
        lambda d: d["files"].update({"../evil": {"sha256": SHA1, "size": 1}}),
        lambda d: d.update(created="yesterday"),
        lambda d: d["files"]["model.onnx"].update(size=-1),
    ):
        bad = json.loads(manifest)
        mutate(bad)
        refused("manifest-invalid", policy(PUBLISHER), _signed(canonical_bytes(bad)))
    refused("manifest-invalid", policy(PUBLISHER), (None, package()[1]))


def test_authorize_wants_an_aware_clock() -> None:
    with pytest.raises(ValueError):
        check(policy(PUBLISHER), package(), now=NOW.replace(tzinfo=None))


_PKG = package()
_POLICY = policy(PUBLISHER)


@settings(max_examples=300, deadline=None)
@given(
    which=st.sampled_from(["manifest", "signature"]),
    pos=st.integers(min_value=0),
    mask=st.integers(min_value=1, max_value=255),
)
def test_flipping_any_single_byte_is_always_refused(which: str, pos: int, mask: int) -> None:
    manifest, sig = _PKG
    target = bytearray(manifest if which == "manifest" else sig)
    target[pos % len(target)] ^= mask
    pkg = (bytes(target), sig) if which == "manifest" else (manifest, bytes(target))
    with pytest.raises(IntegrityError):
        check(_POLICY, pkg)


def test_parse_manifest_reads_back_what_make_manifest_wrote() -> None:
    parsed = parse_manifest(package(expires=NOW + timedelta(hours=1))[0])
    assert (parsed.name, parsed.version, parsed.files["model.onnx"]) == (
        "classifier",
        "1",
        (SHA1, 15),
    )
    assert parsed.expires == "2026-01-01T13:00:00Z"


# --- load_policy -------------------------------------------------------------------------------


def test_a_missing_trust_dir_means_no_keys_and_signatures_required(tmp_path: Path) -> None:
    pol = load_policy(tmp_path / "trust")
    assert pol.keys == {} and not pol.allow_unsigned and not pol.allow_http
    assert pol.source == str(tmp_path / "trust")
    err = refused("untrusted-key", pol, package())
    assert f"no trusted keys in {tmp_path / 'trust'}" in str(err)


def test_load_policy_reads_keys_and_policy(tmp_path: Path) -> None:
    (tmp_path / "publisher.pub").write_bytes(public_pem(PUBLISHER.public_key()))
    (tmp_path / "next.pub").write_bytes(public_pem(OTHER.public_key()))
    (tmp_path / "README").write_text("not a key, ignored")
    (tmp_path / "policy.yaml").write_text(
        "allow_unsigned: true\nallow_http: true\nmin_version: {classifier: 3, detector: '1.2'}\n"
        "allowed_domains: [com.microsoft]\nmax_model_bytes: 1048576\n"
    )
    pol = load_policy(tmp_path)
    assert {k.keyid for k in pol.keys.values()} == {
        key_id(PUBLISHER.public_key()),
        key_id(OTHER.public_key()),
    }
    assert pol == replace(
        pol,
        allow_unsigned=True,
        allow_http=True,
        min_version={"classifier": "3", "detector": "1.2"},
        allowed_domains=("com.microsoft",),
        max_model_bytes=1 << 20,
    )
    assert pol.to_json()["keyids"] == sorted(k.keyid for k in pol.keys.values())
    assert check(pol, package(version="3"), version="3").signed


def test_an_unknown_policy_key_names_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text("allow_unsigned: false\nrequire_signatures: false\n")
    with pytest.raises(TrustConfigError) as info:
        load_policy(tmp_path)
    assert str(tmp_path / "policy.yaml") in str(info.value)
    assert "require_signatures" in str(info.value)
    assert isinstance(info.value, InvalidInput)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("allow_unsigned: 'yes'\n", "allow_unsigned"),
        ("min_version: [1]\n", "min_version"),
        ("min_version: {Classifier: '1'}\n", "min_version.Classifier"),
        ("allowed_domains: com.microsoft\n", "allowed_domains"),
        ("max_model_bytes: 0\n", "max_model_bytes"),
        ("- a list\n", "mapping"),
        ("allow_unsigned: [\n", ":2"),
        ("version_scheme: calver\n", "version_scheme"),
        ("version_scheme: integer\nmin_version: {classifier: '1.0'}\n", "min_version.classifier"),
        ("certificate_identities: [{email: a@b}]\n", "certificate_identities[0]"),
        ("keyless_identities: [{identity: a, issuer: b}]\n", "reserved"),
    ],
)
def test_bad_policy_values_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    (tmp_path / "policy.yaml").write_text(text)
    with pytest.raises(TrustConfigError) as info:
        load_policy(tmp_path)
    assert needle in str(info.value) and "policy.yaml" in str(info.value)


def test_a_malformed_ed25519_or_p521_pub_file_is_named(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    (tmp_path / "good.pub").write_bytes(public_pem(PUBLISHER.public_key()))
    bad = tmp_path / "broken.pub"
    bad.write_text("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n")
    with pytest.raises(TrustConfigError) as info:
        load_policy(tmp_path)
    assert str(bad) in str(info.value)
    spki = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    bad.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(*spki))
    retired = load_policy(tmp_path)  # an upgraded device's old key: ignored, and said so
    assert len(retired.keys) == 1 and "former signature format, which is gone" in str(
        retired.to_json()["retired_keys"]
    )
    assert str(bad) in retired.retired_keys[0]
    bad.write_bytes(ec.generate_private_key(ec.SECP521R1()).public_key().public_bytes(*spki))
    with pytest.raises(TrustConfigError, match="ECDSA P-256 or P-384"):
        load_policy(tmp_path)


def test_a_policy_sets_the_version_scheme_and_certificate_identities(tmp_path: Path) -> None:
    trust_dir(
        tmp_path,
        [PUBLISHER],
        policy_yaml="version_scheme: pep440\nmin_version: {classifier: 1.0rc1}\n"
        "certificate_identities: [{subject: 'CN=ci,O=Example'}, {san: ci@example.com}]\n",
    )
    pol = load_policy(tmp_path)
    assert pol.version_scheme == "pep440" and len(pol.certificate_identities) == 2
    assert pol.to_json()["certificate_identities"][1] == {"subject": None, "san": "ci@example.com"}
    refused("downgrade", pol, package(version="1.0a1"), version="1.0a1")
    assert check(pol, package(version="1.0"), version="1.0").signed
