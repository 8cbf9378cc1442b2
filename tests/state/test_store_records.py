"""The store's repair records (`store-damaged`, `refetched`): typed and versioned like the
others, written through the journal, read back; a later schema is kept raw; and what is still to
repair is replayed from them in journal order."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.core.names import Event, Phase
from reconciler.state.journal import Journal
from reconciler.state.records import Raw, Refetched, StoreDamaged, parse
from reconciler.state.store_records import pending_repairs
from tests.support.records import row

DAMAGED = StoreDamaged("blob", "a" * 64, "1", "sha256 mismatch", "/state/damaged/sha256-a")
REFETCHED = Refetched("blob", "a" * 64, "1", 906909)


@pytest.mark.parametrize(
    ("event", "body"),
    [
        (Event.STORE_DAMAGED, DAMAGED),
        (Event.STORE_DAMAGED, StoreDamaged("artifact", "k" * 64, "2", "damaged", None)),
        (Event.REFETCHED, REFETCHED),
    ],
)
def test_each_record_is_written_and_read_back(tmp_path: Path, event: Event, body: object) -> None:
    journal = Journal(tmp_path / "journal.db")
    try:
        journal.append("m", event, Phase.DONE, detail=body)  # type: ignore[arg-type]
        [rec] = journal.records()
        assert rec.details["schema"] == 1
        assert parse(rec) == body
    finally:
        journal.close()


def test_a_record_is_refused_under_another_step(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db")
    try:
        with pytest.raises(ValueError):
            journal.append("m", Event.REFETCHED, Phase.DONE, detail=DAMAGED)
    finally:
        journal.close()


def test_a_later_schema_or_a_damaged_detail_is_kept_raw() -> None:
    newer = row(1, "m", Event.STORE_DAMAGED, Phase.DONE, {"schema": 9, "kind": "blob"})
    broken = row(2, "m", Event.REFETCHED, Phase.DONE, {"schema": 1, "kind": 3})
    assert isinstance(parse(newer), Raw) and "newer" in (parse(newer).problem or "")  # type: ignore[union-attr]
    assert isinstance(parse(broken), Raw)


def test_pending_repairs_are_what_was_damaged_and_not_repaired_since() -> None:
    artifact = StoreDamaged("artifact", "k" * 64, "1", "damaged")
    bodies = [("m", DAMAGED), ("m", artifact), ("m", REFETCHED), ("n", Raw({}))]
    assert pending_repairs(bodies) == {("artifact", "k" * 64): "m"}
    assert pending_repairs([("m", REFETCHED), ("m", DAMAGED)]) == {("blob", "a" * 64): "m"}
    assert pending_repairs([]) == {}
