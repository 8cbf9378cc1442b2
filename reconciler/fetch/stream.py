"""What every transport hands the download loop: an open `Download`, behind the `Fetcher` protocol.

`transports.fetch_into_store` and `fetch_bytes` only ever see this: a fetcher opens a byte
stream at an offset and says where it really started and how large the whole resource is.
`FetchDropped` is the one failure the loop retries (resuming the `.part`), so both transports
(`files`, `http`) raise it for drops and timeouts and nothing else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from reconciler.core.errors import TransientError


class FetchDropped(TransientError):
    """The transfer broke off (drop, timeout, 5xx): worth retrying now, resuming the .part."""

    reason = "fetch-failed"


@dataclass
class Download:
    """An open source: `chunks` are the resource's bytes from `start` (the asked offset or 0)."""

    start: int
    total: int | None  # size of the whole resource, when the source says
    chunks: Iterator[bytes]


class Fetcher(Protocol):
    def open(self, url: str, offset: int = 0) -> contextlib.AbstractContextManager[Download]:
        """Open `url` at `offset` (or at 0 if the source cannot seek); raise HotswapErrors."""
        ...
