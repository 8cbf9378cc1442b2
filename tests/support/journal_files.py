"""Real journal files for the tests of its head and its start: filled, cut short, damaged."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from reconciler.state.journal import Journal, Record


def fill(path: Path, n: int = 5, model: str = "classifier") -> list[Record]:
    j = Journal(path)
    try:
        return [j.append(model, "fetch", "begin", detail={"step": f"fetch v{i}"}) for i in range(n)]
    finally:
        j.close()


@contextlib.contextmanager
def reopened(path: Path, readonly: bool = False) -> Iterator[Journal]:
    j = Journal(path, readonly=readonly)
    try:
        yield j
    finally:
        j.close()


def delete_tail(path: Path, after_seq: int) -> None:
    """What a careless (or hostile) hand does with the sqlite3 shell: the newest rows go."""
    con = sqlite3.connect(path)
    with con:
        con.execute("DELETE FROM records WHERE seq > ?", (after_seq,))
    con.close()


def truncate(path: Path, keep_fraction: float = 0.5) -> None:
    """A torn copy or a full disk: the file ends early (on a page boundary or not)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])
