"""hotswap and the `model_signing` CLI sign and check the same packages, both ways.

A publisher may sign in CI with `model_signing sign key|certificate` (or an HSM, through it) and
a device owner may check a package with `model_signing verify`: what one tool writes the other
accepts, and a tampered package fails in both.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.trust.policy import authorize, load_policy
from tests.support.kit import Kit
from tests.support.signed import make_leaf, make_root, write_private_key

MODEL_SIGNING = Path(sys.executable).parent / "model_signing"


def model_signing(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MODEL_SIGNING), *map(str, args)], capture_output=True, text=True, timeout=120
    )


def _unsigned_package(kit: Kit, root: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    model = kit.registry / "classifier" / "1" / "model.onnx"
    argv = ["publish", str(model), "--name", "classifier", "--version", "1", "--no-sign"]
    assert main([*argv, "--out", str(root / "reg")]) == 0
    assert "NOT signed" in capsys.readouterr().out
    pkg = root / "reg" / "classifier" / "1"
    (pkg / "README.md").write_text("anything else in the package is signed with it\n")
    return pkg


def _device_accepts(pkg: Path, trust: Path) -> None:
    """The daemon's own decision (authorize, on the bytes it fetches) and `hotswap verify`."""
    sha = hashlib.sha256((pkg / "model.onnx").read_bytes()).hexdigest()
    auth = authorize(
        load_policy(trust),
        name="classifier",
        version="1",
        sha256=sha,
        manifest=(pkg / "manifest.json").read_bytes(),
        signature=(pkg / "model.sig").read_bytes(),
        now=dt.datetime.now(dt.timezone.utc),
    )
    assert auth.signed
    assert main(["verify", str(pkg), "--trust-dir", str(trust)]) == 0


def test_a_package_signed_by_the_model_signing_cli_is_accepted_by_the_device(
    tmp_path: Path, kit: Kit, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keygen", "--out", str(tmp_path / "keys")]) == 0
    pkg = _unsigned_package(kit, tmp_path, capsys)
    key = tmp_path / "keys" / "hotswap.key"
    r = model_signing("sign", "key", pkg, "--private_key", key, "--signature", pkg / "model.sig")
    assert r.returncode == 0, r.stderr
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "ci.pub").write_bytes((tmp_path / "keys" / "hotswap.pub").read_bytes())
    _device_accepts(pkg, trust)
    assert "signed by trusted key" in capsys.readouterr().out

    (pkg / "README.md").write_text("changed after signing\n")  # any file of the package counts
    assert main(["verify", str(pkg), "--trust-dir", str(trust)]) == 1
    assert "[sha256-mismatch]" in capsys.readouterr().err


def test_a_package_published_by_hotswap_verifies_with_the_model_signing_cli(
    tmp_path: Path, kit: Kit
) -> None:
    assert main(["keygen", "--out", str(tmp_path / "keys"), "--curve", "p384"]) == 0
    model = kit.registry / "classifier" / "1" / "model.onnx"
    argv = ["publish", str(model), "--name", "classifier", "--version", "1"]
    assert main([*argv, "--key", str(tmp_path / "keys/hotswap.key"), "--out", str(tmp_path)]) == 0
    pkg = tmp_path / "classifier" / "1"
    pub = tmp_path / "keys" / "hotswap.pub"
    r = model_signing("verify", "key", pkg, "--public_key", pub, "--signature", pkg / "model.sig")
    assert r.returncode == 0 and "Verification succeeded" in r.stdout, r.stdout + r.stderr

    data = bytearray((pkg / "manifest.json").read_bytes())
    data[-3] ^= 1
    (pkg / "manifest.json").write_bytes(bytes(data))
    r = model_signing("verify", "key", pkg, "--public_key", pub, "--signature", pkg / "model.sig")
    assert r.returncode != 0 and "manifest.json" in r.stdout + r.stderr


def test_certificate_signing_both_ways_with_identity_constraints(
    tmp_path: Path, kit: Kit, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_root()
    leaf = make_leaf(root, cn="model-publisher", san="ci@example.com")
    (tmp_path / "root.crt").write_bytes(root.pem)
    (tmp_path / "leaf.crt").write_bytes(leaf.pem)
    key = write_private_key(tmp_path / "leaf.key", leaf.key)
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "example-root.crt").write_bytes(root.pem)

    # model_signing signs with the certificate, the device checks the chain to its root
    pkg = _unsigned_package(kit, tmp_path, capsys)
    r = model_signing(
        "sign", "certificate", pkg, "--private_key", key, "--signing_certificate",
        tmp_path / "leaf.crt", "--certificate_chain", tmp_path / "root.crt",
        "--signature", pkg / "model.sig",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (trust / "policy.yaml").write_text("certificate_identities: [{san: ci@example.com}]\n")
    _device_accepts(pkg, trust)
    assert "signed by trusted certificate O=Example,CN=model-publisher" in capsys.readouterr().out
    (trust / "policy.yaml").write_text("certificate_identities: [{san: release@example.com}]\n")
    assert main(["verify", str(pkg), "--trust-dir", str(trust)]) == 1
    err = capsys.readouterr().err
    assert "[untrusted-key]" in err and "release@example.com" in err

    # hotswap signs with the certificate, model_signing verifies the chain
    sign = ["sign", str(pkg), "--key", str(key), "--certificate", str(tmp_path / "leaf.crt")]
    assert main(sign) == 2  # model_signing needs the chain
    assert "--certificate-chain" in capsys.readouterr().err
    assert main([*sign, "--certificate-chain", str(tmp_path / "root.crt")]) == 0
    r = model_signing(
        "verify", "certificate", pkg, "--certificate_chain", tmp_path / "root.crt",
        "--signature", pkg / "model.sig",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr

    # a certificate from another CA: the chain does not lead to the device's root
    stranger = make_leaf(make_root("Other CA"))
    (tmp_path / "stranger.crt").write_bytes(stranger.pem)
    stranger_key = write_private_key(tmp_path / "stranger.key", stranger.key)
    sign = ["sign", str(pkg), "--key", str(stranger_key), "--certificate"]
    sign += [str(tmp_path / "stranger.crt"), "--certificate-chain", str(tmp_path / "stranger.crt")]
    assert main(sign) == 0
    (trust / "policy.yaml").unlink()
    assert main(["verify", str(pkg), "--trust-dir", str(trust)]) == 1
    assert "does not chain to a root trusted in" in capsys.readouterr().err
