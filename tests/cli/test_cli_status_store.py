"""`hotswap status` on damaged store copies: the snapshot's figures and one line for people."""

from __future__ import annotations

from reconciler.cli.status import store_row

FOUND = {
    "kind": "blob",
    "what": "a" * 64,
    "version": "1",
    "message": "sha256 mismatch",
    "moved_to": "/state/damaged/sha256-aaaa.damaged-20261202T050000000000Z",
}


def test_nothing_damaged_shows_nothing() -> None:
    assert store_row(None) is None
    assert store_row({"damaged": 0, "repairing": [], "recent": []}) is None


def test_a_repair_in_progress_says_what_is_fetched_again() -> None:
    row = store_row(
        {
            "damaged": 1,
            "repairing": [{"kind": "blob", "what": "a" * 64}],
            "recent": [{**FOUND, "repaired": False}],
        }
    )
    assert row is not None
    assert row["text"] == (
        "store damaged 1x since start; last: blob of v1, kept at"
        f" {FOUND['moved_to']}; repairing: blob {'a' * 12}"
    )


def test_a_repaired_store_says_so() -> None:
    row = store_row({"damaged": 2, "repairing": [], "recent": [{**FOUND, "repaired": True}]})
    assert row is not None and row["text"].endswith("; repaired") and row["damaged"] == 2


def test_a_repair_pending_from_before_the_restart_is_shown() -> None:
    row = store_row({"damaged": 0, "repairing": [{"kind": "blob", "what": "b" * 64}], "recent": []})
    assert row is not None and row["text"] == (
        f"store: repairing: blob {'b' * 12} (found damaged before this start)"
    )
