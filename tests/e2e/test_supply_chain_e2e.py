"""The supply chain end to end, with a real daemon: a signed package pushed with `hotswap publish
--to oci://` to a real registry and served from it with credentials.yaml (whose secret never
appears in the log, journal, status or errors), and desired-state commits that must be signed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reconciler.source.commits import ALLOWED_SIGNERS
from tests.support.daemon import Daemon
from tests.support.e2e import VersionWatch, wait_records, wait_served
from tests.support.gitsync import SignedRepo, git_tools_missing
from tests.support.kit import REPO, Kit, write_text
from tests.support.oci_registry import OciRegistry, registry_available


def publish_to(registry: OciRegistry, kit: Kit, version: str, creds: Path, out: Path) -> str:
    """`hotswap publish --to oci://`: the reference it says to pin."""
    model = kit.docs[version]["spec"]["model"]["source"]
    run = subprocess.run(
        [sys.executable, "-m", "reconciler", "publish", model, "--name", "classifier",
         "--version", version, "--key", str(kit.public_key.with_suffix(".key")), "--out",
         str(out), "--to", f"oci://{registry.host}/models/classifier:{version}",
         "--credentials", str(creds), "--allow-http"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return re.findall(r"source: (oci://\S+)", run.stdout)[-1]


def credentials_yaml(registry: OciRegistry, password: str) -> str:
    return (
        f"hosts:\n  '{registry.host}':\n    username: {registry.user}\n"
        f"    password: '{password}'\n    plain_http: true\n"
    )


def everything_said(d: Daemon) -> str:
    status = d.cli("status")
    return "\n".join(
        [
            d.log_path.read_text(errors="replace"),
            json.dumps(d.journal_records()),
            (d.state / "status.json").read_text(),
            status.stdout + status.stderr,
        ]
    )


@pytest.mark.skipif(registry_available() is not None, reason=str(registry_available()))
def test_served_from_an_oci_registry_and_the_password_is_never_shown(
    kit: Kit, daemon, tmp_path: Path
) -> None:
    with OciRegistry(tmp_path / "registry") as registry:
        creds = write_text(tmp_path / "pub" / "credentials.yaml",
                           credentials_yaml(registry, registry.password))  # fmt: skip
        refs = {v: publish_to(registry, kit, v, creds, tmp_path / "pkgs") for v in ("1", "2")}
        d: Daemon = daemon()
        trust = d.state / "trust"
        write_text(trust / "policy.yaml", "allow_http: true\n")
        write_text(trust / "credentials.yaml", credentials_yaml(registry, registry.password))

        def desire(version: str) -> None:
            def to_oci(doc: dict) -> None:
                doc["spec"]["model"]["source"] = refs[version]
                del doc["spec"]["model"]["manifest"]  # manifest.json of the same artifact

            kit.write(d.desired, version, mutate=to_oci)

        desire("1")
        d.start()
        wait_served(d, "1", timeout=60)
        wrong = "wrong-pass-0xdeadbeef"
        write_text(trust / "credentials.yaml", credentials_yaml(registry, wrong))
        with VersionWatch(d) as watch:
            desire("2")
            failed = wait_records(d, "v2 refused by the registry", phase="failed", to_version="2")
        watch.assert_only("1")
        assert failed[-1]["detail"]["reason"] == "auth-failed", failed[-1]
        said = everything_said(d)
        assert registry.password not in said and wrong not in said
        assert "refused the credentials" in said


def _doc(kit: Kit, version: str) -> str:
    return yaml.safe_dump(kit.doc(version), sort_keys=False)


@pytest.mark.skipif(git_tools_missing() is not None, reason=str(git_tools_missing()))
def test_an_unsigned_desired_commit_is_not_acted_on(kit: Kit, daemon, tmp_path: Path) -> None:
    repo = SignedRepo(tmp_path / "sync")
    repo.publish({"classifier.yaml": _doc(kit, "1")}, signer="alice")
    d: Daemon = daemon(desired=repo.link)
    write_text(d.state / "trust" / ALLOWED_SIGNERS, repo.allowed_signers("alice"))
    d.start()
    wait_served(d, "1")
    with VersionWatch(d) as watch:
        unsigned = repo.publish({"classifier.yaml": _doc(kit, "2")}, signer=None)
        d.wait_for(
            lambda: (d.status().get("desired_commit") or {}).get("commit") == unsigned,
            30,
            "the unsigned commit judged",
        )
        refused = wait_records(d, "the refusal journaled", step="desired", phase="failed")
    watch.assert_only("1")
    verdict = d.status()["desired_commit"]
    assert verdict["ok"] is False and verdict["reason"] == "unsigned"
    assert unsigned[:12] in refused[-1]["detail"]["message"]
    shown = d.cli("status").stdout
    assert f"desired commit {unsigned} NOT ACTED ON [unsigned]" in shown, shown
