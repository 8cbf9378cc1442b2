"""Named crash points for fault injection: a no-op unless HOTSWAP_CRASHPOINT names the point.

`HOTSWAP_CRASHPOINT=swap:begin` makes the process SIGKILL itself the first time it passes
`crashpoint("swap:begin")`; `HOTSWAP_CRASHPOINT=swap:begin@2` on the second pass. SIGKILL (not an
exception, not exit) so no cleanup, finally-block or atexit handler runs: exactly a power cut as
far as the process's own files are concerned. The crash-recovery tests kill the real daemon at
every step boundary this way.

`HOTSWAP_CRASHPOINT=loop:pass=block` (or `NAME@N=block`) blocks the thread that reaches the point
instead, for good: a wedged loop, as the systemd watchdog tests need it (the loop stops pinging and
the supervisor kills the process). In-process tests end the block with `unblock()`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

_ENV = "HOTSWAP_CRASHPOINT"
_lock = threading.Lock()
_hits: dict[str, int] = {}
_unblocked = threading.Event()


def _target() -> tuple[str, int, str] | None:
    spec = os.environ.get(_ENV, "").strip()
    if not spec:
        return None
    spec, _, kind = spec.partition("=")
    name, _, nth = spec.partition("@")
    return name, int(nth) if nth.isdigit() else 1, kind or "kill"


def unblock() -> None:
    """Release every thread blocked at a `=block` crash point (in-process tests); a point
    reached later blocks again."""
    global _unblocked
    released, _unblocked = _unblocked, threading.Event()
    released.set()


def crashpoint(name: str) -> None:
    target = _target()
    if target is None or target[0] != name:
        return
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] < target[1]:
            return
    if target[2] == "block":
        sys.stderr.write(f"hotswap: crashpoint {name} reached, blocking\n")
        sys.stderr.flush()
        _unblocked.wait()
        return
    sys.stderr.write(f"hotswap: crashpoint {name} reached, SIGKILL\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
