"""`hotswap validate`: what a device would refuse, refused in CI first, with file:line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.trust.signing import generate_keypair
from tests.support.tiny_models import TinyRegistry, deployment_yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo(tmp_path: Path) -> tuple[TinyRegistry, Path]:
    registry = TinyRegistry.create(tmp_path / "publisher")
    desired = tmp_path / "desired"
    desired.mkdir()
    (desired / "m.yaml").write_text(deployment_yaml(registry, "m", "1"))
    return registry, desired


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["validate", *argv])
    return code, capsys.readouterr().out


def test_a_valid_repository_passes_with_its_signatures(
    repo: tuple[TinyRegistry, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    registry, desired = repo
    code, out = _run(capsys, str(desired), "--trust-dir", str(registry.public_key.parent))
    assert (code, out) == (0, "")


def test_schema_errors_name_file_and_line_as_github_annotations(
    repo: tuple[TinyRegistry, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, desired = repo
    (desired / "bad.yaml").write_text(
        "apiVersion: hotswap/v1\nkind: ModelDeployment\nmetadata: {name: b}\nspec:\n  modle: {}\n"
    )
    code, out = _run(capsys, str(desired), "--format", "github")
    assert code == 1
    assert f"::error file={desired / 'bad.yaml'},line=5::" in out  # each problem, not the first
    assert f"::error file={desired / 'bad.yaml'},line=4::" in out
    code, out = _run(capsys, str(desired / "bad.yaml"), "--json")
    report = json.loads(out)
    assert code == 1 and not report["ok"]
    assert [(p["line"], p["unreachable"]) for p in report["problems"]] == [(4, False), (5, False)]


def test_an_interface_that_breaks_the_declared_contract_is_invalid(
    repo: tuple[TinyRegistry, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, desired = repo
    text = (desired / "m.yaml").read_text().replace("outputs: [{name: y", "outputs: [{name: z")
    (desired / "m.yaml").write_text(text)
    code, out = _run(capsys, str(desired))
    assert code == 1
    assert (
        f"{desired / 'm.yaml'}:11 " in out and "no output 'z'" in out and "[contract-break]" in out
    )


def test_a_package_signed_by_an_untrusted_key_is_invalid(
    repo: tuple[TinyRegistry, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, desired = repo
    generate_keypair(tmp_path / "other")
    code, out = _run(capsys, str(desired), "--trust-dir", str(tmp_path / "other"))
    assert code == 1 and "m.yaml:5 " in out and "[untrusted-key]" in out


def test_an_unreachable_source_is_exit_2_and_only_with_fetch(
    repo: tuple[TinyRegistry, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    registry, desired = repo
    spec = registry.spec("m", "1")
    text = deployment_yaml(registry, "m", "1").replace(spec.source, "http://127.0.0.1:9/m.onnx")
    (desired / "m.yaml").write_text(
        text.replace(f"manifest: {spec.manifest}", "manifest: http://127.0.0.1:9/manifest.json")
    )
    assert _run(capsys, str(desired))[0] == 0  # remote bytes are not read unless asked
    code, out = _run(capsys, str(desired), "--fetch", "--json")
    assert code == 2 and json.loads(out)["problems"][0]["unreachable"]


def test_usage_errors_and_config_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["validate", str(tmp_path / "nothere")]) == 2
    assert main(["validate", str(REPO / "examples" / "config.yaml")]) == 0
    bad = tmp_path / "config.yaml"
    bad.write_text("kind: Config\nworkers: 0\n")
    code, out = _run(capsys, str(bad))
    assert code == 1 and f"{bad}:2 workers: 0 is less than the minimum of 1" in out


def test_files_the_project_writes_name_their_schema() -> None:
    config = (REPO / "examples" / "config.yaml").read_text().splitlines()[0]
    assert config == "# yaml-language-server: $schema=https://hotswap.dev/schemas/config.v1.json"
    for name in ("config.v1.json", "model-deployment.v1.json"):
        schema = json.loads((REPO / "schemas" / name).read_text())
        assert schema["$id"] == f"https://hotswap.dev/schemas/{name}"
    made = (REPO / "examples" / "make_models.py").read_text()
    assert "# yaml-language-server: $schema={SCHEMA_ID}" in made
