"""The daemon's log lines in each place stderr can go: the journal (syslog priority on every
line, so `journalctl -p err` works), a file or pipe (JSON), a terminal (the pretty console)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

from tests.support.kit import REPO

LOG_THREE = (
    "from reconciler.cli.logs import configure; import structlog, sys;"
    "configure(sys.argv[1], None if sys.argv[2] == '-' else sys.argv[2] == 'json');"
    "log = structlog.get_logger('t');"
    "log.debug('d.one'); log.info('i.two', model='m'); log.warning('w.three');"
    "exec('try:\\n 1/0\\nexcept ZeroDivisionError:\\n log.exception(\"e.four\")')"
)


def _run(stderr: int, env: dict[str, str], level: str = "debug", mode: str = "-") -> None:
    subprocess.run(
        [sys.executable, "-c", LOG_THREE, level, mode],
        stderr=stderr,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        check=True,
        timeout=60,
    )


def _journal_env(path: Path) -> dict[str, str]:
    st = os.stat(path)
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


def test_a_journal_stream_gets_the_priority_of_every_line(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    with path.open("wb") as f:
        _run(f.fileno(), _journal_env(path))
    lines = path.read_text().splitlines()
    assert lines[0].startswith("<7>d.one") and lines[1].startswith("<6>i.two")
    assert "model=m" in lines[1] and lines[2].startswith("<4>w.three")
    assert lines[3].startswith("<3>e.four")
    # the traceback too: `journalctl -p err` shows all of it
    assert len(lines) > 4 and all(line.startswith("<3>") for line in lines[3:])
    assert "ZeroDivisionError" in lines[-1]


def test_json_under_the_journal_keeps_the_prefix_and_a_stale_variable_is_ignored(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal"
    with path.open("wb") as f:
        _run(f.fileno(), _journal_env(path), level="info", mode="json")
    first = path.read_text().splitlines()[0]
    assert first.startswith("<6>") and json.loads(first[3:])["event"] == "i.two"
    # stderr redirected to another file: the inherited variable names something else
    other = tmp_path / "file.log"
    with other.open("wb") as f:
        _run(f.fileno(), _journal_env(path), level="info")
    records = [json.loads(line) for line in other.read_text().splitlines()]
    assert [r["event"] for r in records] == ["i.two", "w.three", "e.four"]
    assert records[0]["level"] == "info" and "timestamp" in records[0]


def test_a_terminal_gets_the_console(tmp_path: Path) -> None:
    main, secondary = pty.openpty()
    try:
        _run(secondary, {"JOURNAL_STREAM": ""}, level="info")
        os.close(secondary)
        out = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the writer is gone and everything was read
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(main)
    text = out.decode(errors="replace")
    assert "i.two" in text and "\x1b[" in text  # coloured
    assert not text.lstrip().startswith("{") and "<6>" not in text
