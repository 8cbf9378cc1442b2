"""Signed desired-state commits, with real git and ssh-keygen: a revision is acted on only when an
allowed signer signed it; otherwise the last accepted one stays in force, with the refusal (the
commit and the signer) said once. Commits are flipped in by symlink as git-sync does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from reconciler.source.commits import ALLOWED_SIGNERS, KEYRINGS, CommitGate
from tests.support.gitsync import SignedRepo, git_tools_missing

pytestmark = pytest.mark.skipif(git_tools_missing() is not None, reason=str(git_tools_missing()))


def doc(version: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "hotswap/v1",
            "kind": "ModelDeployment",
            "metadata": {"name": "classifier"},
            "spec": {
                "model": {"version": version, "source": "m.onnx", "sha256": "a" * 64},
                "interface": {
                    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
                    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
                },
            },
        }
    )


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[SignedRepo]:
    repo = SignedRepo(tmp_path / "sync")
    yield repo
    repo.stop_gpg_agents()


@pytest.fixture
def trust(tmp_path: Path, repo: SignedRepo) -> Path:
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / ALLOWED_SIGNERS).write_text(repo.allowed_signers("alice"))
    return trust


def version(desired) -> str | None:  # type: ignore[no-untyped-def]
    spec = desired.models.get("classifier")
    return spec.version if spec else None


def test_only_commits_by_an_allowed_signer_are_acted_on(repo: SignedRepo, trust: Path) -> None:
    gate = CommitGate(trust)
    signed = repo.publish({"classifier.yaml": doc("1")}, signer="alice")
    first = gate.read(repo.link)
    assert version(first) == "1" and first.revision == signed and not first.errors
    assert gate.verdict and gate.verdict.ok and gate.verdict.signer == "alice@example.com"

    unsigned = repo.publish({"classifier.yaml": doc("2")}, signer=None)
    held = gate.read(repo.link)
    assert version(held) == "1" and held.revision == signed  # the last accepted stays in force
    assert gate.verdict is not None and gate.verdict.reason == "unsigned"
    assert gate.verdict.commit == unsigned and unsigned[:12] in held.errors[0].message

    stranger = repo.publish({"classifier.yaml": doc("3")}, signer="mallory")
    held = gate.read(repo.link)
    assert version(held) == "1"
    assert gate.verdict.reason == "untrusted-signer" and gate.verdict.commit == stranger
    assert gate.verdict.key and gate.verdict.key.startswith("SHA256:")

    again = repo.publish({"classifier.yaml": doc("4")}, signer="alice")
    assert version(gate.read(repo.link)) == "4" and gate.verdict.commit == again


def test_before_any_accepted_revision_nothing_is_acted_on(repo: SignedRepo, trust: Path) -> None:
    repo.publish({"classifier.yaml": doc("1")}, signer=None)
    desired = CommitGate(trust).read(repo.link)
    assert desired.models == {} and desired.readable is False  # holds everything served
    assert "is not acted on" in desired.errors[0].message


def test_a_dirty_or_non_git_desired_dir_is_refused(
    repo: SignedRepo, trust: Path, tmp_path: Path
) -> None:
    gate = CommitGate(trust)
    repo.publish({"classifier.yaml": doc("1")}, signer="alice")
    assert version(gate.read(repo.link)) == "1"
    (repo.link / "extra.yaml").write_text(doc("9"))  # a file nobody signed
    held = gate.read(repo.link)
    assert version(held) == "1" and gate.verdict.reason == "dirty"
    assert "extra.yaml" in gate.verdict.message
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "classifier.yaml").write_text(doc("1"))
    fresh = CommitGate(trust)
    assert fresh.read(plain).models == {} and fresh.verdict.reason == "not-git"


def test_without_a_policy_any_checkout_is_read(repo: SignedRepo, tmp_path: Path) -> None:
    repo.publish({"classifier.yaml": doc("2")}, signer=None)
    gate = CommitGate(tmp_path / "no-trust")
    assert version(gate.read(repo.link)) == "2" and gate.verdict is None


@pytest.mark.skipif(git_tools_missing("gpg", "gpgconf") is not None, reason="no gpg")
def test_an_openpgp_keyring_allows_only_its_own_keys(repo: SignedRepo, tmp_path: Path) -> None:
    trust = tmp_path / "gpg-trust"
    trust.mkdir()
    (trust / KEYRINGS[1]).write_text(repo.gpg_key("bob"))
    repo.gpg_key("carol")  # a key with a good signature, not in the device's keyring
    gate = CommitGate(trust)
    bob = repo.publish({"classifier.yaml": doc("1")}, signer="bob", gpg=True)
    assert version(gate.read(repo.link)) == "1" and gate.verdict.commit == bob
    assert gate.verdict.signer and "bob@example.com" in gate.verdict.signer
    repo.publish({"classifier.yaml": doc("2")}, signer="carol", gpg=True)
    assert version(gate.read(repo.link)) == "1" and gate.verdict.reason == "untrusted-signer"
    repo.publish({"classifier.yaml": doc("3")}, signer="alice")  # SSH: no allowed-signers here
    assert version(gate.read(repo.link)) == "1" and gate.verdict.reason == "no-policy-for-type"
