"""Journal rows for the tests of what reads them back (reconciler.state.queries): built in
memory with the columns a reader looks at, no file and no chain behind them."""

from __future__ import annotations

from typing import Any

from reconciler.state.journal import Record, canonical_json


def row(
    seq: int,
    model: str,
    step: str,
    phase: str,
    detail: Any = None,
    *,
    to_version: str | None = None,
    desired_digest: str | None = None,
    time: str = "2026-01-01T00:00:00+00:00",
) -> Record:
    """One row; `detail` is a typed record (its `to_detail()` is stored), a dict or None."""
    body = detail.to_detail() if hasattr(detail, "to_detail") else (detail or {})
    return Record(
        seq, time, model, None, to_version, str(step), str(phase), desired_digest, None,
        canonical_json(body), "", "",
    )  # fmt: skip
