"""`/v2/health/ready` for a fleet: is this device doing the work it has been doing?

The controller's `ready()` asks `Readiness.ready`. By default a device stays ready while every
desired model that has ever served on it (restored at boot or swapped in since) is serving: a
new model that is still building, or was quarantined, leaves a working device in the load
balancer. A device with models desired and none of them serving is not ready (one that just
booted takes no traffic until a model serves). `--strict-readiness` (`strict`) is the rule of
earlier releases: every desired model serves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable


class Readiness:
    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self._served: set[str] = set()  # models that have served since the last promotion known
        self._lock = threading.Lock()  # HTTP threads ask while the loop restores

    def served_before(self, models: Iterable[str]) -> None:
        """Models the journal says were promoted before this start: they count from boot."""
        with self._lock:
            self._served.update(models)

    def ready(self, desired: Iterable[str], serving: Callable[[str], bool]) -> bool:
        names = list(desired)
        now = {name for name in names if serving(name)}
        if self.strict:
            return len(now) == len(names)
        with self._lock:
            self._served.update(now)
            counted = [name for name in names if name in self._served]
        if names and not counted:  # nothing desired has served yet
            return False
        return all(name in now for name in counted)
