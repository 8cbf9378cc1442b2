"""The inference backends this device has, each loaded once, and the build keys they imply.

Prepare (build), instances (load) and memory (its estimate) ask for a backend by name; observe
reports the cache identities, which are part of every build key, so that a new TensorRT or a
new GPU means a rebuild. Tests hand in fixed backends (a fake TensorRT) through the constructor
instead of probing the machine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from reconciler.core.buildkey import build_key
from reconciler.core.desired import ModelSpec
from reconciler.core.errors import RuntimeFailure
from runtime.backends import Backend, BackendError, available_backends, get_backend


class Backends:
    def __init__(
        self,
        loaded: Mapping[str, Backend] | None = None,
        identities: Mapping[str, str] | None = None,
        factory: Callable[[str], Backend] = get_backend,
    ) -> None:
        """`identities`: backend name -> cache identity; probed from the machine when None."""
        self._lock = threading.Lock()
        self._loaded: dict[str, Backend] = dict(loaded or {})
        self._factory = factory
        found = available_backends() if identities is None else identities
        self.identities: tuple[tuple[str, str], ...] = tuple(sorted(found.items()))

    def get(self, name: str) -> Backend:
        with self._lock:
            if name not in self._loaded:
                try:
                    self._loaded[name] = self._factory(name)
                except BackendError as e:  # e.g. backend-unavailable: retried, not a bug
                    raise RuntimeFailure(f"backend {name}: {e}", reason=e.reason) from e
            return self._loaded[name]

    def key_for(self, spec: ModelSpec) -> str:
        return build_key(spec, dict(self.identities).get(spec.backend))
