"""Stopping a process a test started, by the pid it started: SIGTERM, then SIGKILL if it lingers."""

from __future__ import annotations

import signal
import subprocess


def terminate(proc: subprocess.Popen[bytes] | None, grace_s: float = 10.0) -> None:
    """Stop `proc` (None, or already exited: nothing to do) and reap it."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
