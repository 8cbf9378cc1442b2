"""Canonical JSON: the one encoding that is hashed or signed (sorted keys, no whitespace, ASCII).

Used by the journal (`reconciler.state.journal`: the hash chain covers the canonical form of
every record) and by the trust package (`reconciler.trust`: a manifest is signed byte for byte
as `canonical_bytes(manifest)`). It lives in the pure core so neither of them has to import the
other to agree on the bytes.
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def canonical_bytes(value: Any) -> bytes:
    return canonical_json(value).encode()
