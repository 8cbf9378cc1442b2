"""What the journal's head costs: milliseconds per append with and without it, on this disk.

Run from the repository root: `python bench/journal_append.py [--appends N] [--dir PATH]`
(`--dir` on the device's real state filesystem: a tmpfs hides every fsync). Each append is a
SQLite commit (WAL, synchronous=FULL); the head adds an atomic rewrite of `journal.head` (temp
file, fsync, rename, fsync of the directory) inside the same lock. The two are run alternately,
twice, so a disk that warms up does not favour either.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from reconciler.state.journal import Journal, Record


def per_append_ms(path: Path, appends: int, with_head: bool) -> float:
    journal = Journal(path)
    if not with_head:

        def no_head(record: Record) -> None:
            return None

        journal._write_head = no_head  # type: ignore[method-assign]
    try:
        start = time.perf_counter()
        for i in range(appends):
            journal.append("classifier", "fetch", "begin", detail={"step": f"fetch v{i}"})
        return (time.perf_counter() - start) * 1000 / appends
    finally:
        journal.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=300)
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to write (default: a temp dir)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        runs: dict[bool, list[float]] = {False: [], True: []}
        for round_ in range(2):
            for with_head in (False, True):
                path = Path(tmp) / f"journal-{round_}-{int(with_head)}.db"
                runs[with_head].append(per_append_ms(path, args.appends, with_head))
    without, with_ = statistics.median(runs[False]), statistics.median(runs[True])
    print(f"append without head: {without:.2f} ms, with head: {with_:.2f} ms,"
          f" the head adds {with_ - without:.2f} ms per record")  # fmt: skip


if __name__ == "__main__":
    main()
