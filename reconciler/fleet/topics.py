"""The MQTT topics a fleet uses, and what a wake message may carry.

One place for the names, so the daemon (`reconciler.fleet.mqtt`) and `hotswap fleet`
(`reconciler.cli.fleet`) cannot drift apart:

    <prefix>/fleet/sync              wake every device (payload: empty or a commit id)
    <prefix>/devices/<id>/sync       wake one device
    <prefix>/devices/<id>/state      retained: the device's reported state (`report`)
"""

from __future__ import annotations

import re

DEFAULT_PREFIX = "hotswap"
COMMIT = re.compile(r"^[0-9a-f]{7,64}$")  # a git object id, full or abbreviated (sha1 or sha256)
MAX_WAKE_BYTES = 64


def fleet_sync(prefix: str) -> str:
    return f"{prefix}/fleet/sync"


def device_sync(prefix: str, device_id: str) -> str:
    return f"{prefix}/devices/{device_id}/sync"


def device_state(prefix: str, device_id: str) -> str:
    return f"{prefix}/devices/{device_id}/state"


def all_states(prefix: str) -> str:
    """The subscription `hotswap fleet status` uses: every device's retained state."""
    return f"{prefix}/devices/+/state"


def device_of_state_topic(prefix: str, topic: str) -> str | None:
    """The device id in a state topic, or None for any other topic."""
    head, tail = f"{prefix}/devices/", "/state"
    if topic.startswith(head) and topic.endswith(tail):
        device = topic[len(head) : -len(tail)]
        return device if device and "/" not in device else None
    return None


class WakeRejected(ValueError):
    """A wake payload that is not empty and not a commit id (logged and ignored)."""


def wake_commit(payload: bytes) -> str | None:
    """The commit a wake asks for (None: "look now"). Anything but a commit id is refused, so
    the broker can only make a device look sooner, never tell it what to serve."""
    if len(payload) > MAX_WAKE_BYTES:
        raise WakeRejected(f"{len(payload)} bytes; a wake carries at most a commit id")
    try:
        text = payload.decode("ascii").strip()
    except UnicodeDecodeError:
        raise WakeRejected("not ASCII; a wake carries at most a commit id") from None
    if not text:
        return None
    if not COMMIT.match(text):
        raise WakeRejected("not a commit id (hex, 7-64 characters)")
    return text
