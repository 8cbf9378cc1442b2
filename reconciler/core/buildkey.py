"""The build cache key: everything that makes a built artifact incompatible, hashed.

Pure (no I/O) so the planner can decide whether a build is needed. The backend version comes
from observed state because it is a fact of this device, not of the desired state.
"""

from __future__ import annotations

import hashlib
import json

from reconciler.core.desired import ModelSpec

# Bump when the build recipe itself changes, so old artifacts are rebuilt rather than trusted.
RECIPE = 1


def build_key(spec: ModelSpec, backend_version: str | None) -> str:
    fields = {
        "recipe": RECIPE,
        "sha256": spec.sha256,
        "backend": spec.backend,
        "backend_version": backend_version or "unavailable",
        "precision": spec.precision,
        "shapes": {name: [list(r.min), list(r.opt), list(r.max)] for name, r in spec.shapes},
    }
    encoded = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()
