"""What the load generator sends and how it reads the answer: V2 inference request bodies.

Called by load_generator.Load (every request), servers.Server.wait_serving (is version N up?)
and baselines (the bare ONNX Runtime baseline runs the Payload's own array, and costs its
codec). The swap scenario sends one Payload, encoded once, for the whole run, so the client
costs nothing measurable; the canary scenario needs a different image per request (v5 fails on
some inputs only) and gets it from RandomBodies, built from the same Payload so the headers and
shapes match and each body costs one copy, not a fresh draw of 150,528 normals.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"  # the V2 binary tensor extension
_VERSION_RE = re.compile(rb'"model_version"\s*:\s*"([^"]*)"')


@dataclass(frozen=True)
class Payload:
    """The one inference request of the whole run, encoded once."""

    protocol: str  # "json" (tensors as JSON lists) or "binary" (V2 binary tensor extension)
    x: np.ndarray
    body: bytes
    headers: dict[str, str]


def make_payload(batch: int, seed: int, protocol: str = "json") -> Payload:
    """JSON: values rounded to 3 decimals so the body is ~1 MB per image instead of ~3 MB of
    17-digit floats. Binary: a small JSON header, then the raw little-endian FP32 bytes, and the
    output asked back as raw bytes. The same array feeds the bare ONNX Runtime baseline."""
    rng = np.random.default_rng(seed)
    values = np.round(rng.standard_normal((batch, 3, 224, 224)), 3)  # float64: short JSON text
    x = values.astype("<f4")
    tensor: dict[str, Any] = {"name": "input", "shape": list(x.shape), "datatype": "FP32"}
    if protocol == "json":
        body = {"inputs": [{**tensor, "data": values.ravel().tolist()}]}
        return Payload(
            protocol,
            x,
            json.dumps(body, separators=(",", ":")).encode(),
            {"content-type": "application/json"},
        )
    raw = x.tobytes()
    header = {
        "inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}],
        "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    return Payload(
        protocol,
        x,
        head + raw,
        {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(head))},
    )


def response_version(r: httpx.Response) -> str | None:
    """model_version of a V2 response: JSON, or a JSON header followed by binary tensors."""
    m = _VERSION_RE.search(r.content[:512])
    if m:
        return m.group(1).decode()
    length = r.headers.get(HEADER_LENGTH)
    try:
        head = r.content[: int(length)] if length and length.isdigit() else r.content
        value = json.loads(head).get("model_version")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


class RandomBodies:
    """Binary V2 bodies of standard-normal images, a different one for every request: one of
    POOL images drawn up front, with the first element of each row drawn afresh per request.
    Whether a request trips v5 (a row with input[n,0,0,0] > threshold, p = 0.159 per row) is
    so a fresh draw each time, and making a body costs one copy of the image (~600 kB), not
    150,528 normal draws competing with the daemon for the CPUs."""

    POOL = 8

    def __init__(self, payload: Payload, seed: int, threshold: float) -> None:
        assert payload.protocol == "binary"
        rng = np.random.default_rng([seed, 1])
        self.batch = int(payload.x.shape[0])
        self.row_bytes = int(np.prod(payload.x.shape[1:])) * 4
        self.threshold = threshold
        self.headers = payload.headers
        self.head = payload.body[: int(payload.headers[HEADER_LENGTH])]
        self.images = [
            memoryview(
                rng.standard_normal(payload.x.shape, dtype=np.float32).astype("<f4").tobytes()
            )
            for _ in range(self.POOL)
        ]

    def draw(self, rng: np.random.Generator) -> tuple[bytes, bool]:
        image = self.images[int(rng.integers(len(self.images)))]
        firsts = rng.standard_normal(self.batch).astype("<f4")
        parts: list[bytes | memoryview] = [self.head]
        for n in range(self.batch):
            at = n * self.row_bytes
            parts += [firsts[n : n + 1].tobytes(), image[at + 4 : at + self.row_bytes]]
        return b"".join(parts), bool((firsts > self.threshold).any())
