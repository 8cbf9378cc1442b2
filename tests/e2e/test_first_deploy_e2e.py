"""A fresh device whose desired file asks for a canary or a shadow serves its first version:
the real daemon, nothing served before, the journal saying why the rollout was skipped."""

from __future__ import annotations

import pytest

from tests.support.e2e import infer_raw, select, wait_records
from tests.support.kit import Kit

ROLLOUTS = {
    "canary": {"strategy": "canary", "steps": [{"weight": 10, "for": "1m"}]},
    "shadow": {"strategy": "shadow", "steps": [{"weight": 100, "for": "1m"}]},
}


@pytest.mark.parametrize("strategy", sorted(ROLLOUTS))
def test_a_fresh_device_serves_its_first_version_under_a(daemon, kit: Kit, strategy: str) -> None:
    d = daemon()
    kit.write(d.desired, "1", mutate=lambda doc: doc["spec"].update(rollout=ROLLOUTS[strategy]))
    d.start()
    wait_records(d, "v1 promoted", timeout=60, step="swap", phase="done", to_version="1")
    assert infer_raw(d.client).status_code == 200
    recs = d.journal_records("classifier")
    assert select(recs, step="rollout") == []
    assert [r["phase"] for r in select(recs, step="health-check")] == ["begin", "done"]
    [swap] = select(recs, step="swap", phase="done")
    assert f"no version to compare a {strategy} with" in swap["detail"]["rollout_skipped"]
