"""Who this device is in a fleet: an id and labels, shown by `hotswap status` and in reports.

Made once by the daemon's wiring (`reconciler.cli.identity` finds the default id) and handed to
the controller, which writes it into status.json; a reporter (MQTT) takes the same value. Pure:
nothing here reads the machine.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # as schemas/config.v1.json
LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")


@dataclass(frozen=True)
class DeviceIdentity:
    id: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "labels": dict(sorted(self.labels.items()))}

    def matches(self, selector: Mapping[str, str]) -> bool:
        """Every `key=value` of `selector` is one of this device's labels."""
        return all(self.labels.get(k) == v for k, v in selector.items())

    @classmethod
    def from_json(cls, data: Any) -> DeviceIdentity | None:
        """What a status snapshot says; None when it has no (readable) device entry."""
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            return None
        labels = data.get("labels")
        labels = labels if isinstance(labels, dict) else {}
        return cls(data["id"], {str(k): str(v) for k, v in labels.items()})


def parse_label(text: str) -> tuple[str, str]:
    """`line=3` -> ("line", "3"); ValueError says what a label looks like."""
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not LABEL_KEY.match(key):
        raise ValueError(
            f"a label is KEY=VALUE with KEY of letters, digits, . _ / - (not {text!r})"
        )
    return key, value


def labels_of(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Repeated labels: the last value of a key wins, as a later flag wins."""
    return dict(pairs)
