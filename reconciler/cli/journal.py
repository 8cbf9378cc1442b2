"""`hotswap journal`: print the journal of transitions, or verify its hash chain.

Registered into the main parser by `reconciler.cli.main`. Opens the journal read-only, so it
runs beside the daemon; a damaged file is reported with exit 1, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from typing import Any

from reconciler.cli.exits import EXIT_FAILURE, EXIT_INVALID, EXIT_OK
from reconciler.core.names import Event


def add_command(sub: Any, common_parent: argparse.ArgumentParser) -> None:
    jr = sub.add_parser(
        "journal", parents=[common_parent], help="print or verify the journal of transitions"
    )
    jr.add_argument("--model", help="only this model's records")
    jr.add_argument("--json", action="store_true", help="one JSON object per line")
    jr.add_argument(
        "--verify",
        action="store_true",
        help="check the hash chain and that it ends where the journal's head says; exit 1 and"
        " name the first bad record, or the missing ones, if not",
    )
    jr.add_argument("--tail", type=int, default=0, metavar="N", help="only the last N records")
    jr.set_defaults(handler=cmd_journal)


def cmd_journal(args: argparse.Namespace) -> int:
    from reconciler.state.journal import Journal, JournalError

    try:
        journal = Journal(args.state_dir / "journal.db", readonly=True)
    except JournalError as e:
        print(f"hotswap: {e}", file=sys.stderr)
        return EXIT_INVALID
    try:
        if args.verify:
            return _verify(journal)
        return _print_records(args, journal)
    finally:
        journal.close()


def _verify(journal: Any) -> int:
    from reconciler.state.journal_head import Verdict
    from reconciler.state.journal_open import check_end

    result = journal.verify()
    if result.ok:
        end = check_end(journal)  # the head is read before the end: a running daemon is no race
        if end.rows_lost:
            print(f"journal BROKEN: {end.message} ({result.records} records read)", file=sys.stderr)
            return EXIT_FAILURE
        print(f"journal ok: {result.records} records, hash chain intact; {end.message}")
        if end.verdict in (Verdict.MISSING, Verdict.UNREADABLE):
            print(f"hotswap: warning: {end.message}", file=sys.stderr)
        return EXIT_OK
    where = f" at seq {result.first_bad_seq}" if result.first_bad_seq is not None else ""
    print(
        f"journal BROKEN{where}: {result.problem} ({result.records} records read)",
        file=sys.stderr,
    )
    return EXIT_FAILURE


def _print_records(args: argparse.Namespace, journal: Any) -> int:
    try:
        records = list(journal.records(args.model))
    except (sqlite3.Error, UnicodeDecodeError) as e:
        print(f"journal BROKEN: SQLite cannot read the journal: {e}", file=sys.stderr)
        return EXIT_FAILURE
    if args.tail:
        records = records[-args.tail :]
    for rec in records:
        try:
            print(record_line(rec, args.json))
        except (TypeError, ValueError) as e:  # a damaged file: a blob or number where text was
            print(
                f"journal BROKEN at seq {rec.seq}: the record cannot be shown ({e});"
                " see hotswap journal --verify",
                file=sys.stderr,
            )
            return EXIT_FAILURE
    return EXIT_OK


def record_line(rec: Any, as_json: bool) -> str:
    """One record as `hotswap journal` prints it: a JSON object, or a line for people."""
    if as_json:
        return json.dumps(rec.to_json(), sort_keys=True)
    versions = f"{rec.from_version or '-'} -> {rec.to_version or '-'}"
    return f"{rec.seq:>5} {rec.time[:23]} {rec.model:<14} {rec.step:<13} {rec.phase:<7} {versions:<12} {_note(rec)}"


def _note(rec: Any) -> str:
    detail = rec.details
    note = (
        detail.get("message")
        or detail.get("step")
        or detail.get("why")
        or (
            f"stage {detail['stage']}/{detail.get('of', '?')} passed: {detail['verdict']}"
            if "verdict" in detail
            else ""
        )
    )
    if rec.step in (Event.OVERRIDE, Event.RETRY) and detail.get("user"):  # an operator's request
        note = note or f"by {detail['user']}: {detail.get('reason') or 'no reason given'}"
    return str(note)
