"""The artifact file: `HSTRTENG` + 4-byte big-endian header length + JSON header + engine bytes.

The build child writes it; the backend reads the header alone for memory planning and the whole
file to load. The header carries the environment compatibility key and the engine's own sha256,
so `load` refuses an engine built elsewhere, or torn, before TensorRT ever sees its bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

from runtime.backends.base import BackendError

MAGIC = b"HSTRTENG"
FORMAT = 1
_PREFIX = len(MAGIC) + 4


def write_artifact(dest: Path, header: dict[str, Any], engine: bytes) -> None:
    """Write header (plus format and engine sha256) and engine to `dest`, fsynced.

    Not renamed into place here: `dest` is already the temp file the control plane commits.
    """
    header = {**header, "format": FORMAT, "engine_sha256": hashlib.sha256(engine).hexdigest()}
    encoded = json.dumps(header, sort_keys=True).encode()
    with open(dest, "wb") as f:
        f.write(MAGIC + struct.pack(">I", len(encoded)) + encoded)
        f.write(engine)
        f.flush()
        os.fsync(f.fileno())


def _header_length(prefix: bytes, artifact: Path) -> int:
    if len(prefix) < _PREFIX or not prefix.startswith(MAGIC):
        raise BackendError(f"{artifact.name} is not a hotswap TensorRT engine", "load-failed")
    (length,) = struct.unpack(">I", prefix[len(MAGIC) : _PREFIX])
    return int(length)


def _parse_header(encoded: bytes, artifact: Path) -> dict[str, Any]:
    try:
        header: dict[str, Any] = json.loads(encoded)
    except ValueError as e:
        raise BackendError(f"{artifact.name}: unreadable engine header", "load-failed") from e
    return header


def read_header(artifact: Path) -> dict[str, Any]:
    """Only the header of an artifact (no engine bytes read): for memory planning."""
    with artifact.open("rb") as f:
        length = _header_length(f.read(_PREFIX), artifact)
        return _parse_header(f.read(length), artifact)


def read_artifact(artifact: Path) -> tuple[dict[str, Any], bytes]:
    """Header and engine bytes of an artifact; raises load-failed on a malformed or torn file."""
    data = artifact.read_bytes()
    length = _header_length(data[:_PREFIX], artifact)
    header = _parse_header(data[_PREFIX : _PREFIX + length], artifact)
    engine = data[_PREFIX + length :]
    if hashlib.sha256(engine).hexdigest() != header.get("engine_sha256"):
        raise BackendError(
            f"{artifact.name}: engine bytes do not match their sha256 (torn or tampered)",
            reason="load-failed",
        )
    return header, engine
