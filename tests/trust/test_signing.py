"""Keys, signature documents and `publish` into a registry directory (the example classifier)."""

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
from reconciler.trust.policy import authorize, load_policy
from reconciler.trust.signing import (
    add_signature,
    generate_keypair,
    key_id,
    load_private_key,
    parse_signatures,
    publish,
    sign_manifest_file,
)
from tests.support.kit import Kit

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path, str]:
    return generate_keypair(tmp_path / "keys")


@pytest.fixture
def model(kit: Kit) -> Path:
    return kit.registry / "classifier" / "1" / "model.onnx"


def test_key_id_is_sha256_of_the_raw_public_key() -> None:
    key = Ed25519PrivateKey.generate().public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key_id(key) == hashlib.sha256(raw).hexdigest()[:16]


def test_keygen_writes_a_private_key_0600_and_refuses_to_overwrite(
    keys: tuple[Path, Path, str],
) -> None:
    key, pub, kid = keys
    assert (key.name, pub.name) == ("hotswap.key", "hotswap.pub")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in key.read_bytes() and b"BEGIN PUBLIC KEY" in pub.read_bytes()
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


def test_canonical_bytes_are_sorted_compact_ascii() -> None:
    assert canonical_bytes({"b": 1, "a": ["é", None]}) == b'{"a":["\\u00e9",null],"b":1}'


def test_add_signature_replaces_its_own_key_and_keeps_the_others() -> None:
    k1, k2 = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    doc = add_signature(None, b"data", k1)
    doc = add_signature(doc, b"data", k2)
    doc = add_signature(doc, b"data", k1)
    ids = [e["keyid"] for e in doc["signatures"]]
    assert ids == [key_id(k2.public_key()), key_id(k1.public_key())]
    assert [kid for kid, _ in parse_signatures(canonical_bytes(doc))] == ids


def test_parse_signatures_refuses_non_canonical_base64() -> None:
    k = Ed25519PrivateKey.generate()
    doc = add_signature(None, b"data", k)
    sig = doc["signatures"][0]["sig"]
    raw = base64.b64decode(sig)
    # the last character before "==" carries 4 unused bits: another spelling of the same bytes
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    alt = sig[:-3] + alphabet[alphabet.index(sig[-3]) ^ 1] + "=="
    assert base64.b64decode(alt) == raw and alt != sig
    doc["signatures"][0]["sig"] = alt
    with pytest.raises(IntegrityError) as info:
        parse_signatures(canonical_bytes(doc))
    assert info.value.reason == "bad-signature"


def test_publish_writes_a_signed_package_that_a_device_authorizes(
    tmp_path: Path, keys: tuple[Path, Path, str], model: Path
) -> None:
    key, pub, kid = keys
    pkg = publish(
        model, "classifier", "1", key, tmp_path / "reg", expires=NOW + timedelta(days=30), now=NOW
    )
    assert pkg == tmp_path / "reg" / "classifier" / "1"
    assert sorted(p.name for p in pkg.iterdir()) == [
        "manifest.json",
        "manifest.json.sig",
        "model.onnx",
    ]
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
        signature=(pkg / "manifest.json.sig").read_bytes(),
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
    assert (pkg / "manifest.json.sig").exists() and (pkg / "golden.npz").read_bytes() == b"kept"


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


def test_sign_adds_a_second_signature_for_a_rollover(
    tmp_path: Path, keys: tuple[Path, Path, str], model: Path
) -> None:
    pkg = publish(model, "classifier", "1", keys[0], tmp_path / "reg", now=NOW)
    new_key, _, new_kid = generate_keypair(tmp_path / "newkeys")
    sig_path, kid = sign_manifest_file(pkg / "manifest.json", new_key)
    assert (sig_path, kid) == (pkg / "manifest.json.sig", new_kid)
    ids = [k for k, _ in parse_signatures(sig_path.read_bytes())]
    assert ids == [keys[2], new_kid]
    parse_manifest((pkg / "manifest.json").read_bytes())  # untouched
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"kind": "nope"}')
    with pytest.raises(IntegrityError):
        sign_manifest_file(bogus, new_key)
