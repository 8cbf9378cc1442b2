"""The state directory hotswap 0.1.0 left on a device (tests/fixtures/state-0.1.0), copied
for a test to upgrade: what every later release must still verify, restore and honour."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "state-0.1.0"

# What 0.1.0 recorded (see the fixture's README): v1 promoted again by an operator's rollback.
V1_SHA256 = "a6bccdae134d329b395d162fe613d5fc48b50e1d043f4ae8f3d034e6994c2a2b"
V1_DIGEST = "b5555f48c3c07b4c70260bc59fcdc306cd6da7bf428e3d08bb25b430c5e1f2e2"
V3_DIGEST = "ece0265800cd593d61cd24675b95acfaf5f1b00a8091a0fe244c3d96836253a9"  # quarantined
FIXTURE_KEYID = "e8ac493a030c1ee4"  # the publisher key 0.1.0's device trusted
RECORDS = 45
LAST_SWAP_SEQ = 43
OVERRIDE_SEQ = 41


def copy_state(root: Path) -> Path:
    """A writable copy of the fixture's state directory under `root`."""
    state = root / "state"
    shutil.copytree(FIXTURE / "state", state)
    (state / "requests" / ".keep").unlink(missing_ok=True)
    return state


def write_desired_v3(desired: Path) -> Path:
    """The desired file 0.1.0 last read (v3), its paths written absolute as they were then
    resolved (/tmp/fx/...), so its digest is the one 0.1.0 recorded and quarantined."""
    desired.mkdir(parents=True, exist_ok=True)
    text = (FIXTURE / "desired-classifier.yaml").read_text()
    path = desired / "classifier.yaml"
    path.write_text(text.replace("../../../tmp/fx/", "/tmp/fx/"))
    return path


def records_0_1_0() -> list[dict[str, Any]]:
    """The fixture's journal as `hotswap journal --json` printed it."""
    lines = (FIXTURE / "journal.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]
