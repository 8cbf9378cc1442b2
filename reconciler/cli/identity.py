"""The device id when none is configured: the machine id (systemd's /etc/machine-id, or D-Bus's
copy), else the hostname. Called by `hotswap run`'s options (`reconciler.cli.gitopts`)."""

from __future__ import annotations

import re
import socket
from pathlib import Path

from reconciler.core.device import ID_PATTERN

MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))


def default_device_id(files: tuple[Path, ...] = MACHINE_ID_FILES) -> str:
    for path in files:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if ID_PATTERN.match(text):
            return text
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).strip("-._")
    return host[:128] if host and ID_PATTERN.match(host[:128]) else "unnamed-device"
