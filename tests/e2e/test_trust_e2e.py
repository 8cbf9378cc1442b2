"""The device trust policy, end to end: only what the device's own keys vouch for is served."""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reconciler.trust.signing import generate_keypair, publish
from tests.support.daemon import Daemon
from tests.support.e2e import VersionWatch, select, wait_records, wait_served
from tests.support.kit import Kit, write_text


def _failed_verify(d: Daemon, version: str) -> dict:
    """The refusal of v`version`: at fetch (the manifest is read first) or at a later step."""
    return wait_records(d, f"v{version} refused", phase="failed", to_version=version)[-1]


def _unsigned(kit: Kit, tmp: Path, version: str) -> Path:
    """The same model bytes, outside any package: no manifest, no signature."""
    bare = tmp / "bare" / version / "model.onnx"
    bare.parent.mkdir(parents=True)
    shutil.copyfile(kit.registry / "classifier" / version / "model.onnx", bare)
    return bare


def test_a_device_without_the_publishers_key_serves_nothing_from_it(kit: Kit, daemon) -> None:
    d: Daemon = daemon()
    (d.state / "trust" / "publisher.pub").unlink()
    kit.write(d.desired, "1")
    d.start()
    rec = _failed_verify(d, "1")
    assert rec["detail"]["reason"] == "untrusted-key"
    assert d.served_version() is None


def test_signed_version_is_journaled_with_key_and_manifest(kit: Kit, daemon) -> None:
    d: Daemon = daemon()
    kit.write(d.desired, "1")
    d.start()
    wait_served(d, "1")
    swap = select(d.journal_records("classifier"), step="swap", phase="done")[-1]
    auth = swap["detail"]["authorization"]
    assert auth["signed"] is True and len(auth["keyid"]) == 16
    assert len(auth["manifest_sha256"]) == 64
    assert "signed by " + auth["keyid"] in d.cli("status").stdout


def test_relabelled_downgrade_and_unsigned_are_refused_while_v1_serves(
    kit: Kit, daemon, tmp_path: Path
) -> None:
    d: Daemon = daemon()
    kit.write(d.desired, "1")
    write_text(d.state / "trust" / "policy.yaml", "min_version: {classifier: '1'}\n")
    d.start(resync=0.5)
    wait_served(d, "1")
    with VersionWatch(d) as watch:
        # v1's signed package relabelled as version 7: the manifest binds name and version
        def relabel(doc: dict) -> None:
            doc["spec"]["model"]["version"] = "7"

        kit.write(d.desired, "1", mutate=relabel)
        assert _failed_verify(d, "7")["detail"]["reason"] == "manifest-mismatch"

        # v2's bytes with no manifest at all: refused by default
        def bare(doc: dict) -> None:
            doc["spec"]["model"]["source"] = str(_unsigned(kit, tmp_path, "2"))
            doc["spec"]["model"].pop("manifest")

        kit.write(d.desired, "2", mutate=bare)
        assert _failed_verify(d, "2")["detail"]["reason"] == "unsigned"
    watch.assert_only("1")

    # the device's own policy moves the floor up: v1 is now a downgrade and is not served again
    write_text(d.state / "trust" / "policy.yaml", "min_version: {classifier: '2'}\n")
    kit.write(d.desired, "2")
    wait_served(d, "2")
    kit.write(d.desired, "1")  # v1 is the warm standby: even a pointer change asks the policy
    assert _failed_verify(d, "1")["detail"]["reason"] == "downgrade"
    assert d.served_version() == "2"


def test_unsigned_only_with_the_device_opt_in_and_flagged(kit: Kit, daemon, tmp_path: Path) -> None:
    d: Daemon = daemon()
    write_text(d.state / "trust" / "policy.yaml", "allow_unsigned: true\n")

    def bare(doc: dict) -> None:
        doc["spec"]["model"]["source"] = str(_unsigned(kit, tmp_path, "1"))
        doc["spec"]["model"].pop("manifest")

    kit.write(d.desired, "1", mutate=bare)
    d.start()
    wait_served(d, "1")
    verify = select(d.journal_records("classifier"), step="verify", phase="done")[-1]
    assert verify["detail"]["authorization"]["unsigned_opt_in"] is True
    assert "UNSIGNED" in verify["detail"]["checks"]
    assert "UNSIGNED" in d.cli("status").stdout
    assert "verify.UNSIGNED" in d.log_path.read_text()


def _tampered_signature(kit: Kit, out: Path) -> Path:
    package = out / "classifier" / "2"
    shutil.copytree(kit.registry / "classifier" / "2", package)
    sig = package / "model.sig"
    doc = json.loads(sig.read_text())
    entry = doc["dsseEnvelope"]["signatures"][0]
    raw = bytearray(base64.b64decode(entry["sig"]))
    raw[8] ^= 1
    entry["sig"] = base64.b64encode(bytes(raw)).decode()
    sig.write_text(json.dumps(doc))
    return package


def _tampered_manifest(kit: Kit, out: Path) -> Path:
    """v2's package with its manifest edited after signing (a created time moved back)."""
    package = out / "classifier" / "2"
    shutil.copytree(kit.registry / "classifier" / "2", package)
    manifest = package / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b'"created":"20', b'"created":"19'))
    return package


def _other_publisher(kit: Kit, out: Path) -> Path:
    key, _, _ = generate_keypair(out / "keys")
    return publish(
        kit.registry / "classifier" / "2" / "model.onnx", "classifier", "2", key, out / "registry"
    )


def _expired(kit: Kit, out: Path) -> Path:
    then = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    key = kit.public_key.with_suffix(".key")
    model = kit.registry / "classifier" / "2" / "model.onnx"
    return publish(
        model,
        "classifier",
        "2",
        key,
        out / "registry",
        expires=then + dt.timedelta(days=1),
        now=then,
    )


@pytest.mark.parametrize(
    ("attack", "reason"),
    [
        (_tampered_signature, "bad-signature"),
        (_tampered_manifest, "bad-signature"),
        (_other_publisher, "untrusted-key"),
        (_expired, "expired"),
    ],
)
def test_forged_foreign_or_expired_packages_leave_v1_serving(
    kit: Kit, daemon, tmp_path: Path, attack: Any, reason: str
) -> None:
    d: Daemon = daemon()
    kit.write(d.desired, "1")
    d.start()
    wait_served(d, "1")
    package = attack(kit, tmp_path / "evil")

    def point_at(doc: dict) -> None:
        doc["spec"]["model"]["source"] = str(package / "model.onnx")
        doc["spec"]["model"]["manifest"] = str(package / "manifest.json")

    with VersionWatch(d) as watch:
        kit.write(d.desired, "2", mutate=point_at)
        assert _failed_verify(d, "2")["detail"]["reason"] == reason
    watch.assert_only("1")
    blob = kit.doc("2")["spec"]["model"]["sha256"]
    assert not (d.state / "store" / "sha256" / blob).exists(), "refused before any byte was fetched"


def test_a_package_signed_with_the_model_signing_cli_is_served(
    kit: Kit, daemon, tmp_path: Path
) -> None:
    d: Daemon = daemon()
    kit.write(d.desired, "1")
    d.start()
    wait_served(d, "1")
    package = tmp_path / "ci" / "classifier" / "2"
    shutil.copytree(kit.registry / "classifier" / "2", package)
    (package / "model.sig").unlink()
    key = kit.public_key.with_suffix(".key")
    cli = Path(sys.executable).parent / "model_signing"
    signed = subprocess.run(
        [str(cli), "sign", "key", str(package), "--private_key", str(key),
         "--signature", str(package / "model.sig")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr

    def point_at(doc: dict) -> None:
        doc["spec"]["model"]["source"] = str(package / "model.onnx")
        doc["spec"]["model"]["manifest"] = str(package / "manifest.json")

    kit.write(d.desired, "2", mutate=point_at)
    wait_served(d, "2")
