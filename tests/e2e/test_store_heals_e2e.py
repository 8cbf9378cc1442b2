"""The store heals itself, on the real daemon and across `kill -9`: a flipped byte in the served
version's stored blob, then in its build artifact, never takes the model down for longer than
the restart; each is set aside, journaled (`store-damaged`, `refetched`), shown by `hotswap
status`, counted in `hotswap_store_damaged_total`, and the store ends whole. With no intact copy
anywhere (registry down too) the model answers 503 with Retry-After, never 404, until it heals.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.support.daemon import Daemon
from tests.support.e2e import infer_raw, model_row, select, wait_records, wait_served
from tests.support.kit import Kit


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))


def the_blob(d: Daemon) -> Path:
    [blob] = [p for p in (d.state / "store" / "sha256").iterdir() if p.is_file()]
    return blob


def the_artifact(d: Daemon) -> Path:
    [artifact] = [p for p in (d.state / "artifacts").rglob("model.*") if p.is_file()]
    return artifact


def damaged_total(d: Daemon, kind: str) -> float:
    text = d.client.get("/metrics").text
    pattern = rf'^hotswap_store_damaged_total\{{kind="{kind}",model="classifier"\}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def restart_after_kill9(d: Daemon) -> list[str]:
    """kill -9, start again, and what the first answers were until v1 served again."""
    d.kill9()
    d.start()
    seen: list[str] = []

    def answered() -> bool:
        try:
            r = infer_raw(d.client)
        except Exception:
            return False  # not listening yet (restore runs before the server starts)
        seen.append(f"{r.status_code} {r.headers.get('retry-after')}")
        return r.status_code == 200 and r.json()["model_version"] == "1"

    d.wait_for(answered, 60, "v1 serving after the restart")
    return seen


def test_a_damaged_blob_and_artifact_heal_across_kill9(kit: Kit, daemon) -> None:
    d: Daemon = daemon()
    kit.write(d.desired, "1")
    d.start(resync=1.0)
    wait_served(d, "1")
    blob = the_blob(d)
    good = blob.read_bytes()

    flip_byte(blob)
    seen = restart_after_kill9(d)
    assert not [s for s in seen if s.startswith("404")], seen
    wait_records(d, "the blob fetched again", step="refetched")
    assert blob.read_bytes() == good
    [damaged] = select(d.journal_records(), step="store-damaged")
    assert damaged["detail"]["kind"] == "blob" and damaged["to_version"] == "1"
    assert Path(damaged["detail"]["moved_to"]).parent == d.state / "damaged"
    assert damaged_total(d, "blob") == 1
    row = model_row(d.status())
    assert row["store"]["repairing"] == [] and row["store"]["damaged"] == 1
    assert "store damaged 1x" in d.cli("status").stdout

    flip_byte(the_artifact(d))
    seen = restart_after_kill9(d)
    assert not [s for s in seen if s.startswith("404")], seen
    rebuilt = wait_records(d, "the artifact built again", step="refetched", at_least=2)
    assert rebuilt[-1]["detail"]["kind"] == "artifact"
    assert damaged_total(d, "artifact") == 1  # counted since this start
    assert not [
        r for r in d.journal_records() if r["phase"] == "failed" and r["detail"].get("terminal")
    ]
    assert d.cli("journal", "--verify").returncode == 0
    assert len(list((d.state / "damaged").iterdir())) == 2  # both kept for a look


def test_with_no_intact_copy_the_model_answers_503_until_it_heals(kit: Kit, daemon) -> None:
    d: Daemon = daemon()
    kit.write(d.desired, "1")
    d.start(resync=1.0)
    wait_served(d, "1")
    flip_byte(the_blob(d))
    for path in (d.state / "artifacts").iterdir():
        os.rename(path, d.state / f"gone-{path.name}")  # no artifact to serve from either
    source = Path(kit.doc("1")["spec"]["model"]["source"])
    hidden = source.with_name("model.onnx.hidden")
    os.rename(source, hidden)  # and the registry cannot give it back for now
    try:
        d.kill9()
        d.start(resync=1.0)

        def unavailable() -> bool:
            try:
                r = infer_raw(d.client)
            except Exception:
                return False
            assert r.status_code != 404, r.text
            return r.status_code == 503 and int(r.headers["retry-after"]) > 0

        d.wait_for(unavailable, 60, "503 with Retry-After while nothing intact is left")
    finally:
        os.rename(hidden, source)  # the registry is back
    wait_served(d, "1", timeout=60)
    wait_records(d, "the blob fetched again", step="refetched")
