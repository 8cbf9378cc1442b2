"""`hotswap keygen | sign | publish | verify` as an operator runs them, and their exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from reconciler.cli.main import build_parser, main, parse_args
from reconciler.cli.package import finish_args, parse_expires
from reconciler.core.errors import InvalidInput
from tests.support.kit import REPO, Kit


def hotswap(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("HOTSWAP_TRUST_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keygen_publish_verify_round_trip(tmp_path: Path, kit: Kit) -> None:
    model = kit.registry / "classifier" / "1" / "model.onnx"
    r = hotswap("keygen", "--out", "keys", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "key id" in r.stdout
    r = hotswap(
        "publish", model, "--name", "classifier", "--version", "1", "--key", "keys/hotswap.key",
        "--out", "registry", "--expires", "30d", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    pkg = tmp_path / "registry" / "classifier" / "1"
    assert (pkg / "model.sig").is_file()

    # no trusted key on this "device" yet: refused, and the message says what to do
    r = hotswap("verify", pkg, "--state-dir", "state", cwd=tmp_path)
    assert r.returncode == 1
    assert "copy the publisher's hotswap.pub there" in r.stderr and "[untrusted-key]" in r.stderr

    (tmp_path / "state" / "trust").mkdir(parents=True)
    shutil.copy(tmp_path / "keys" / "hotswap.pub", tmp_path / "state" / "trust")
    r = hotswap("verify", pkg, "--state-dir", "state", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    hint = json.loads((pkg / "model.sig").read_text())["verificationMaterial"]["publicKey"]["hint"]
    assert f"signed by trusted key {hint[:16]}" in r.stdout and "manifest sha256" in r.stdout

    # one flipped byte in the model: the manifest's sha256 no longer matches
    data = bytearray((pkg / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (pkg / "model.onnx").write_bytes(bytes(data))
    r = hotswap("verify", pkg / "manifest.json", "--trust-dir", "state/trust", cwd=tmp_path)
    assert r.returncode == 1 and "[sha256-mismatch]" in r.stderr

    r = hotswap("verify", tmp_path / "nowhere", "--state-dir", "state", cwd=tmp_path)
    assert r.returncode == 2 and "does not exist" in r.stderr


@pytest.fixture
def published(tmp_path: Path, kit: Kit, capsys: pytest.CaptureFixture[str]) -> Path:
    model = kit.registry / "classifier" / "1" / "model.onnx"
    assert main(["keygen", "--out", str(tmp_path / "keys")]) == 0
    argv = ["publish", str(model), "--name", "classifier", "--version", "1"]
    argv += ["--key", str(tmp_path / "keys" / "hotswap.key"), "--out", str(tmp_path / "reg")]
    assert main(argv) == 0
    assert main(argv) == 0  # the same bytes again: a no-op
    assert "nothing to do" in capsys.readouterr().out
    (tmp_path / "trust").mkdir()
    return tmp_path / "reg" / "classifier" / "1"


def test_keygen_refuses_to_overwrite(published: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = published.parents[2] / "keys"
    assert main(["keygen", "--out", str(keys)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err


def test_re_signing_for_a_rotation_makes_a_device_trusting_only_the_new_key_accept(
    published: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = published.parents[2]
    trust = root / "trust"
    assert main(["keygen", "--out", str(root / "new")]) == 0
    shutil.copy(root / "new" / "hotswap.pub", trust)
    verify = ["verify", str(published), "--trust-dir", str(trust), "--json"]
    assert main(verify) == 1
    assert "[untrusted-key]" in capsys.readouterr().err
    assert main(["sign", str(published), "--key", str(root / "new/hotswap.key")]) == 0
    capsys.readouterr()
    assert main(verify) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["signed"] and report["name"] == "classifier" and report["version"] == "1"
    assert report["keyid"] in report["trust"]["keyids"]
    # one signature per bundle: the old key no longer vouches for the re-signed package
    old_only = root / "old-trust"
    old_only.mkdir()
    shutil.copy(root / "keys" / "hotswap.pub", old_only)
    assert main(["verify", str(published), "--trust-dir", str(old_only)]) == 1
    assert "[untrusted-key]" in capsys.readouterr().err


def test_verify_reports_a_tampered_manifest_and_a_downgrade(
    published: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trust = published.parents[2] / "trust"
    shutil.copy(published.parents[2] / "keys" / "hotswap.pub", trust)
    (trust / "policy.yaml").write_text("min_version: {classifier: '2'}\n")
    assert main(["verify", str(published), "--trust-dir", str(trust)]) == 1
    assert "[downgrade]" in capsys.readouterr().err
    (trust / "policy.yaml").write_text("allow_unsigned: true\nmin_versions: {}\n")
    assert main(["verify", str(published), "--trust-dir", str(trust)]) == 2
    err = capsys.readouterr().err
    assert "policy.yaml" in err and "min_versions" in err
    (trust / "policy.yaml").unlink()
    manifest = published / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b'"version":"1"', b'"version":"7"'))
    assert main(["verify", str(published), "--trust-dir", str(trust)]) == 1
    assert "[bad-signature]" in capsys.readouterr().err


def test_unsigned_package_needs_the_device_opt_in_and_says_so(
    published: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trust = published.parents[2] / "trust"
    (published / "model.sig").unlink()
    assert main(["verify", str(published), "--trust-dir", str(trust)]) == 1
    assert "[unsigned]" in capsys.readouterr().err
    (trust / "policy.yaml").write_text("allow_unsigned: true\n")
    assert main(["verify", str(published), "--trust-dir", str(trust)]) == 0
    assert "UNSIGNED" in capsys.readouterr().out


def test_help_explains_how_to_serve_a_registry(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["publish", "--help"])
    out = capsys.readouterr().out
    assert "python -m http.server --directory REGISTRY 8080" in out and "nginx" in out


def test_trust_dir_defaults_to_the_state_dir_and_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HOTSWAP_TRUST_DIR", raising=False)
    args = finish_args(build_parser().parse_args(["run", "--state-dir", "/var/lib/hs"]))
    assert args.trust_dir == Path("/var/lib/hs/trust")
    args = finish_args(build_parser().parse_args(["run", "--trust-dir", "/etc/hs/trust"]))
    assert args.trust_dir == Path("/etc/hs/trust")
    monkeypatch.setenv("HOTSWAP_TRUST_DIR", "/opt/trust")
    assert parse_args(["run"]).trust_dir == Path("/opt/trust")


def test_parse_expires() -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert parse_expires("30d", now) == now + timedelta(days=30)
    assert parse_expires("12h", now) == now + timedelta(hours=12)
    assert parse_expires("2w", now) == now + timedelta(weeks=2)
    assert parse_expires("2027-01-01", now) == datetime(2027, 1, 1, tzinfo=timezone.utc)
    assert parse_expires("2027-01-01T06:00:00Z", now) == datetime(
        2027, 1, 1, 6, tzinfo=timezone.utc
    )
    with pytest.raises(InvalidInput):
        parse_expires("soon", now)
