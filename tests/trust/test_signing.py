"""Keys, package signatures and `publish` into a registry directory (the example classifier)."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from reconciler.core.canonical import canonical_bytes
from reconciler.core.errors import IntegrityError, InvalidInput
from reconciler.trust.manifest import parse_manifest
from reconciler.trust.oms import key_id, unverified_files, verify_bundle
from reconciler.trust.policy import authorize, load_policy
from reconciler.trust.signing import (
    generate_keypair,
    load_private_key,
    publish,
    sign_package,
)
from tests.support.kit import Kit
from tests.support.signed import new_key, trusting

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path, str]:
    return generate_keypair(tmp_path / "keys")


@pytest.fixture
def model(kit: Kit) -> Path:
    return kit.registry / "classifier" / "1" / "model.onnx"


def test_key_id_is_the_start_of_the_key_hint_model_signing_writes() -> None:
    key = new_key()
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert key_id(key.public_key()) == hashlib.sha256(pem).hexdigest()[:16]


def test_keygen_writes_a_private_key_0600_and_refuses_to_overwrite(
    keys: tuple[Path, Path, str],
) -> None:
    key, pub, kid = keys
    assert (key.name, pub.name) == ("hotswap.key", "hotswap.pub")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in key.read_bytes() and b"BEGIN PUBLIC KEY" in pub.read_bytes()
    assert load_private_key(key).curve.name == "secp256r1"
    assert load_private_key(generate_keypair(key.parent / "384", "p384")[0]).key_size == 384
    assert key_id(load_private_key(key).public_key()) == kid
    before = key.read_bytes()
    with pytest.raises(InvalidInput, match="refusing to overwrite") as info:
        generate_keypair(key.parent)
    assert info.value.reason == "key-exists" and key.read_bytes() == before


def test_a_public_key_or_garbage_is_not_a_signing_key(keys: tuple[Path, Path, str]) -> None:
    _, pub, _ = keys
    with pytest.raises(InvalidInput, match=str(pub)):
        load_private_key(pub)
    with pytest.raises(InvalidInput, match="cannot read"):
        load_private_key(pub.parent / "missing.key")
    old = pub.parent / "old.key"
    old.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(InvalidInput, match="former ed25519 format is gone"):
        load_private_key(old)


def test_canonical_bytes_are_sorted_compact_ascii() -> None:
    assert canonical_bytes({"b": 1, "a": ["é", None]}) == b'{"a":["\\u00e9",null],"b":1}'


def test_a_bundle_in_non_canonical_base64_is_a_bad_signature(
    tmp_path: Path, keys: tuple[Path, Path, str], model: Path
) -> None:
    pkg = publish(model, "classifier", "1", keys[0], tmp_path / "reg", now=NOW)
    for _ in range(50):  # an ECDSA signature's length varies: find one whose base64 has padding
        doc = json.loads((pkg / "model.sig").read_text())
        entry = doc["dsseEnvelope"]["signatures"][0]
        if entry["sig"].endswith("="):
            break
        sign_package(pkg, keys[0])
    sig = entry["sig"]
    # the last character before "=" carries unused bits: another spelling of the same bytes
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = len(sig.rstrip("=")) - 1
    alt = sig[:last] + alphabet[alphabet.index(sig[last]) ^ 1] + sig[last + 1 :]
    assert base64.b64decode(alt) == base64.b64decode(sig) and alt != sig
    entry["sig"] = alt
    policy = trusting([load_private_key(keys[0])])
    with pytest.raises(IntegrityError, match="canonical base64") as info:
        verify_bundle(json.dumps(doc).encode(), policy.keys, None, (), "trust")
    assert info.value.reason == "bad-signature"


def test_publish_writes_a_signed_package_that_a_device_authorizes(
    tmp_path: Path, keys: tuple[Path, Path, str], model: Path
) -> None:
    key, pub, kid = keys
    pkg = publish(
        model, "classifier", "1", key, tmp_path / "reg", expires=NOW + timedelta(days=30), now=NOW
    )
    assert pkg == tmp_path / "reg" / "classifier" / "1"
    assert sorted(p.name for p in pkg.iterdir()) == ["manifest.json", "model.onnx", "model.sig"]
    assert (pkg / "model.onnx").read_bytes() == model.read_bytes()
    manifest = (pkg / "manifest.json").read_bytes()
    doc = json.loads(manifest)
    assert canonical_bytes(doc) == manifest
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    assert doc == {
        "apiVersion": "hotswap/v1",
        "kind": "ModelManifest",
        "name": "classifier",
        "version": "1",
        "files": {"model.onnx": {"sha256": sha, "size": model.stat().st_size}},
        "interface": {
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]}],
            "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 1000]}],
        },
        "created": "2026-03-01T00:00:00Z",
        "expires": "2026-03-31T00:00:00Z",
    }
    trust = tmp_path / "trust"
    trust.mkdir()
    shutil.copy(pub, trust)
    auth = authorize(
        load_policy(trust),
        name="classifier",
        version="1",
        sha256=sha,
        manifest=manifest,
        signature=(pkg / "model.sig").read_bytes(),
        now=NOW + timedelta(days=1),
    )
    assert auth.signed and auth.keyid == kid
    assert auth.manifest_sha256 == hashlib.sha256(manifest).hexdigest()


def test_a_published_version_is_immutable(
    tmp_path: Path, keys: tuple[Path, Path, str], kit: Kit, model: Path
) -> None:
    key = keys[0]
    reg = tmp_path / "reg"
    pkg = publish(model, "classifier", "1", key, reg, now=NOW)
    before = {p.name: p.read_bytes() for p in pkg.iterdir()}
    assert publish(model, "classifier", "1", key, reg, now=NOW + timedelta(days=1)) == pkg
    assert {p.name: p.read_bytes() for p in pkg.iterdir()} == before  # no-op, same manifest
    other = kit.registry / "classifier" / "2" / "model.onnx"
    with pytest.raises(InvalidInput, match="immutable") as info:
        publish(other, "classifier", "1", key, reg, now=NOW)
    assert info.value.reason == "version-exists"
    assert {p.name: p.read_bytes() for p in pkg.iterdir()} == before


def test_publish_completes_a_version_dir_that_has_no_signature_yet(
    tmp_path: Path, keys: tuple[Path, Path, str], model: Path
) -> None:
    pkg = tmp_path / "reg" / "classifier" / "1"
    pkg.mkdir(parents=True)
    shutil.copy(model, pkg / "model.onnx")
    (pkg / "golden.npz").write_bytes(b"kept")
    publish(model, "classifier", "1", keys[0], tmp_path / "reg", now=NOW)
    assert (pkg / "model.sig").exists() and (pkg / "golden.npz").read_bytes() == b"kept"
    signed = unverified_files((pkg / "model.sig").read_bytes())
    assert sorted(signed) == ["golden.npz", "manifest.json", "model.onnx"]  # the whole package
    assert signed["golden.npz"] == ("sha256", hashlib.sha256(b"kept").hexdigest())


@pytest.mark.parametrize(
    ("name", "version", "reason"),
    [
        ("Classifier", "1", "invalid-name"),
        ("c", "1/2", "invalid-version"),
        ("c", "", "invalid-version"),
    ],
)
def test_publish_validates_name_and_version_like_desired_state(
    tmp_path: Path, keys: tuple[Path, Path, str], model: Path, name: str, version: str, reason: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        publish(model, name, version, keys[0], tmp_path / "reg", now=NOW)
    assert info.value.reason == reason
    assert not (tmp_path / "reg").exists()


def test_publish_refuses_a_past_expiry_and_a_non_onnx_file(
    tmp_path: Path, keys: tuple[Path, Path, str], model: Path
) -> None:
    with pytest.raises(InvalidInput, match="not after now"):
        publish(model, "c", "1", keys[0], tmp_path / "reg", expires=NOW, now=NOW)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(InvalidInput) as info:
        publish(junk, "c", "1", keys[0], tmp_path / "reg", now=NOW)
    assert info.value.reason == "onnx-invalid"


def test_re_signing_for_a_key_rotation_replaces_the_bundle_and_nothing_else(
    tmp_path: Path, keys: tuple[Path, Path, str], model: Path
) -> None:
    pkg = publish(model, "classifier", "1", keys[0], tmp_path / "reg", now=NOW)
    before = {p.name: p.read_bytes() for p in pkg.iterdir() if p.name != "model.sig"}
    new_key_path, _, new_kid = generate_keypair(tmp_path / "newkeys")
    assert sign_package(pkg, new_key_path) == pkg / "model.sig"
    assert {p.name: p.read_bytes() for p in pkg.iterdir() if p.name != "model.sig"} == before
    assert not list(pkg.parent.glob("*tmp*")), "no temp file left beside the package"
    bundle = (pkg / "model.sig").read_bytes()
    new_trust = trusting([load_private_key(new_key_path)])
    assert verify_bundle(bundle, new_trust.keys, None, (), "t").keyid == new_kid
    parse_manifest((pkg / "manifest.json").read_bytes())  # untouched
    bogus = tmp_path / "bogus"
    bogus.mkdir()
    (bogus / "manifest.json").write_text('{"kind": "nope"}')
    with pytest.raises(IntegrityError):
        sign_package(bogus, new_key_path)
    with pytest.raises(InvalidInput, match="needs one"):
        sign_package(tmp_path, new_key_path)
