"""Bad desired state never changes what is served, and says exactly what is wrong.

One daemon (with a short --resync, so retries with backoff happen quickly) serves v1 for the
whole module; each case starts from the good v1 file, writes a bad one, waits until the daemon
itself reports the error (its journal and status snapshot), and checks that v1 answered every
poll meanwhile.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.daemon import Daemon, trust
from tests.support.e2e import VersionWatch, last_seq, model_row, select, wait_records, wait_served
from tests.support.kit import Kit, write_text

PRECISION_ERROR = "spec.runtime.precision: 'fp64' is not one of ['fp32', 'fp16', 'int8']"

# One module-scoped daemon process serves every test here.
pytestmark = pytest.mark.daemon


@pytest.fixture(scope="module")
def served_v1(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("bad-yaml")
    d = Daemon(root / "desired", root / "state", root / "daemon.log")
    d.desired.mkdir()
    trust(d.state, kit)
    kit.write(d.desired, "1")
    d.start(resync=0.5)
    try:
        wait_served(d, "1")
        yield d
    finally:
        d.stop()


@pytest.fixture
def d(served_v1: Daemon, kit: Kit) -> Daemon:
    """The module's daemon, back on the good v1 file and with no error in its own snapshot."""
    d = served_v1
    assert d.alive(), d.log_tail()
    kit.write(d.desired, "1")
    wait_served(d, "1")
    d.wait_for(lambda: not daemon_errors(d), 30, "the daemon to see the good file again")
    return d


def daemon_errors(d: Daemon) -> list[dict[str, Any]]:
    """Load errors as the daemon itself last saw them (its status snapshot), not the CLI."""
    try:
        return json.loads((d.state / "status.json").read_text()).get("errors", [])
    except (OSError, ValueError):
        return []


def good_text(kit: Kit, version: str = "1") -> str:
    return yaml.safe_dump(kit.doc(version), sort_keys=False)


def line_of(text: str, needle: str) -> int:
    [line] = [i for i, s in enumerate(text.splitlines(), 1) if needle in s]
    return line


def expect_invalid(d: Daemon, text: str, expected: str) -> dict[str, Any]:
    """Write `text`, wait for the daemon to journal the load error; v1 serves throughout."""
    since = last_seq(d)
    with VersionWatch(d, interval=0.05) as watch:
        write_text(d.desired / "classifier.yaml", text)
        d.wait_for(
            lambda: any(expected in e["message"] for e in daemon_errors(d)),
            30,
            f"daemon status snapshot to report {expected!r}",
        )
        [rec] = wait_records(
            d, "desired failed record", step="desired", phase="failed", after_seq=since
        )
    watch.assert_only("1")
    assert d.alive()
    assert expected in rec["detail"]["message"], rec
    assert rec["detail"]["file"].endswith("classifier.yaml")

    status = d.cli("status")
    assert status.returncode == 0
    assert "invalid desired state" in status.stdout and expected in status.stdout, status.stdout
    js = d.status()
    assert any(expected in e["message"] for e in js["errors"]), js
    assert expected in d.log_path.read_text(), "the error should be in the daemon's log"
    # nothing was attempted for the model because of the invalid file
    assert not select(d.journal_records(), after_seq=since, phase="begin")
    return rec


def test_yaml_syntax_error(d: Daemon, kit: Kit) -> None:
    text = good_text(kit).replace("  name: classifier\n", "  name: classifier: oops\n")
    line = line_of(text, "classifier: oops")
    rec = expect_invalid(d, text, f"classifier.yaml:{line} YAML syntax error")
    assert rec["detail"]["line"] == line
    assert "mapping values are not allowed" in rec["detail"]["message"]


def test_schema_violation_names_file_line_and_field(d: Daemon, kit: Kit) -> None:
    text = good_text(kit).replace("precision: fp32", "precision: fp64")
    line = line_of(text, "precision: fp64")
    rec = expect_invalid(d, text, f"classifier.yaml:{line} {PRECISION_ERROR}")
    assert rec["model"] == "classifier"
    assert rec["detail"]["field"] == "spec.runtime.precision"
    assert rec["detail"]["line"] == line
    assert rec["detail"]["message"] == f"desired/classifier.yaml:{line} {PRECISION_ERROR}"
    row = model_row(d.status())
    assert row["state"] == "held (invalid file)"
    assert row["active"]["version"] == "1"


def test_unknown_field_is_named(d: Daemon, kit: Kit) -> None:
    text = good_text(kit).replace("    precision: fp32\n", "    precision: fp32\n    turbo: true\n")
    line = line_of(text, "turbo: true")
    rec = expect_invalid(
        d, text, f"classifier.yaml:{line} spec.runtime.turbo: unknown field 'turbo'"
    )
    assert rec["detail"]["field"] == "spec.runtime.turbo"


def test_wrong_sha256_is_refused_before_download_and_names_both_hashes(d: Daemon, kit: Kit) -> None:
    real = kit.doc("1")["spec"]["model"]["sha256"]
    wrong = "ab" * 32
    assert wrong != real
    since = last_seq(d)
    with VersionWatch(d, interval=0.05) as watch:
        kit.write(d.desired, "1", mutate=lambda doc: doc["spec"]["model"].update(sha256=wrong))
        [rec] = wait_records(
            d, "fetch failed", step="fetch", phase="failed", to_version="1", after_seq=since
        )
    watch.assert_only("1")
    assert d.alive()
    # The signed manifest is read before any model byte: it pins the real hash, desired state
    # another, so the fetch is refused without downloading (the store's own hash check, which
    # catches a registry serving other bytes than it signed, is tested in test_fetch_http).
    assert rec["detail"]["reason"] == "manifest-mismatch"
    message = rec["detail"]["message"]
    assert wrong in message and real in message, message
    recs = select(d.journal_records(), after_seq=since)
    assert not select(recs, step="swap"), recs
    assert not list((d.state / "store" / "sha256").glob(wrong + "*")), "no blob under the pin"


def test_missing_model_file_is_retried_until_it_appears(
    d: Daemon, kit: Kit, tmp_path: Path
) -> None:
    late = tmp_path / "late" / "model.onnx"
    v2 = kit.doc("2")
    since = last_seq(d)
    with VersionWatch(d, interval=0.05) as watch:
        kit.write(d.desired, "2", mutate=lambda doc: doc["spec"]["model"].update(source=str(late)))
        # the first failure; on a loaded machine its retry may already be journaled too
        rec = wait_records(
            d, "fetch failed", step="fetch", phase="failed", to_version="2", after_seq=since
        )[0]
    watch.assert_only("1")
    assert d.alive()
    assert rec["detail"]["reason"] == "source-missing"
    assert "does not exist" in rec["detail"]["message"]
    assert str(late) in rec["detail"]["message"]

    # the daemon retries on its own (backoff); once the file is there, v2 rolls out
    late.parent.mkdir(parents=True)
    shutil.copyfile(v2["spec"]["model"]["source"], late)
    wait_served(d, "2")
    recs = select(d.journal_records(), after_seq=since, to_version="2")
    assert select(recs, step="swap", phase="done"), recs
    assert len(select(recs, step="fetch", phase="begin")) >= 2, "fetched again after failing"
