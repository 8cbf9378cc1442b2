"""The OCI transport: a package in a registry, pulled with the distribution API.

`transports.fetcher_for` builds an `OciFetcher` for `oci://` sources (the reference grammar and
what the digest pins are in `reconciler.core.ociref`). A package is one OCI artifact, laid out
as oras lays out files: every file of the package directory (the model, hotswap's manifest,
its signature, whatever else the publisher put there) is one layer, named by its
`org.opencontainers.image.title` annotation (`oci_push` writes them). The fetcher:

1. GETs `/v2/<name>/manifests/<digest or tag>` asking for the OCI manifest media type, at most
   MANIFEST_MAX_BYTES, and, when the reference pins a digest, refuses a manifest whose sha256
   differs (`sha256-mismatch`);
2. picks the layer the `#member` names: `sha256:<hex>` for the model (`download.fetch` asks for
   the layer whose digest is `spec.model.sha256`), a title for the other files;
3. GETs `/v2/<name>/blobs/<digest>` through `HttpFetcher`, so Range resume, redirects, status
   mapping, credentials (`HostAuth`: basic, or the bearer token flow) and TLS are the HTTP
   transport's, and the download loop, caps and progress are `transports`'s, unchanged.

A blob read from byte 0 is checked against its layer digest as it streams (the model is checked
again by the loop against `spec.model.sha256`, the same value). Plain http only for a host whose
credentials.yaml entry says `plain_http: true`, and only under the trust policy's `allow_http`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from reconciler.core.errors import IntegrityError, InvalidInput, TransientError
from reconciler.core.ociref import OciRef, OciRefError, parse_oci
from reconciler.fetch.credentials import Credentials
from reconciler.fetch.http import DEFAULT_TIMEOUT, HttpFetcher, refusal
from reconciler.fetch.stream import Download, FetchDropped

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
ACCEPT = f"{MANIFEST_TYPE}, application/vnd.docker.distribution.manifest.v2+json;q=0.5"
TITLE = "org.opencontainers.image.title"
MANIFEST_MAX_BYTES = 4 << 20


@dataclass(frozen=True)
class Layer:
    digest: str  # "sha256:<hex>"
    size: int
    title: str | None


def registry_base(ref: OciRef, credentials: Credentials, allow_http: bool) -> str:
    """`https://HOST/v2/NAME`, or http:// where the host's entry says `plain_http`."""
    access = credentials.for_host(ref.host)
    if access is not None and access.plain_http:
        if not allow_http:
            raise InvalidInput(
                f"{ref.host}: credentials.yaml says plain_http, but the device trust policy does"
                " not set `allow_http: true`",
                reason="http-not-allowed",
            )
        return f"http://{ref.host}/v2/{ref.name}"
    return f"https://{ref.host}/v2/{ref.name}"


def parse_ref(url: str) -> OciRef:
    try:
        return parse_oci(url)
    except OciRefError as e:
        raise InvalidInput(f"{url}: {e}", reason="source-invalid") from e


class OciFetcher:
    """A `Fetcher` for oci:// URLs; one per download (it keeps the manifests it read)."""

    def __init__(
        self,
        allow_http: bool = False,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        credentials: Credentials | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.allow_http = allow_http
        self.credentials = credentials or Credentials()
        self.http = HttpFetcher(allow_http, timeout, transport, self.credentials)
        self._layers: dict[str, list[Layer]] = {}

    def close(self) -> None:
        self.http.close()

    def open(self, url: str, offset: int = 0) -> contextlib.AbstractContextManager[Download]:
        return self._open(url, offset)

    @contextlib.contextmanager
    def _open(self, url: str, offset: int) -> Iterator[Download]:
        ref = parse_ref(url)
        layer = self.layer(ref)
        blob = f"{registry_base(ref, self.credentials, self.allow_http)}/blobs/{layer.digest}"
        with self.http.open(blob, offset) as dl:
            total = dl.total if dl.total is not None else layer.size
            chunks = dl.chunks if dl.start else _checked(dl.chunks, layer, url)
            yield Download(dl.start, total, chunks)

    def layer(self, ref: OciRef) -> Layer:
        """The layer `ref.member` names, from the (pinned) manifest."""
        layers = self.layers(ref)
        member = ref.member or ""
        if member.startswith("sha256:"):
            found = [x for x in layers if x.digest == member]
            if not found:
                have = ", ".join(f"{x.title or '?'} {x.digest}" for x in layers) or "none"
                raise IntegrityError(
                    f"{ref.with_member(None)} has no layer with {member}, the sha256 desired"
                    f" state pins (its layers: {have})",
                    reason="sha256-mismatch",
                )
            return found[0]
        found = [x for x in layers if x.title == member]
        if not found:
            raise TransientError(
                f"{ref.with_member(None)} has no file {member!r}", reason="source-missing"
            )
        return found[0]

    def layers(self, ref: OciRef) -> list[Layer]:
        key = str(ref.with_member(None))
        if key not in self._layers:
            self._layers[key] = parse_layers(self._read_manifest(ref), key)
        return self._layers[key]

    def _read_manifest(self, ref: OciRef) -> bytes:
        url = f"{registry_base(ref, self.credentials, self.allow_http)}/manifests/{ref.reference}"
        request = self.http.client(url).build_request("GET", url, headers={"Accept": ACCEPT})
        response = self.http.send(request, stream=True)
        try:
            if response.status_code != 200:
                raise refusal(response)
            body = bytearray()
            for chunk in response.iter_raw():
                body += chunk
                if len(body) > MANIFEST_MAX_BYTES:
                    raise IntegrityError(
                        f"{url}: the manifest is larger than {MANIFEST_MAX_BYTES} bytes",
                        reason="size-exceeded",
                    )
        except httpx.TransportError as e:
            raise FetchDropped(f"{url}: {type(e).__name__}") from e
        finally:
            response.close()
        actual = "sha256:" + hashlib.sha256(body).hexdigest()
        if ref.digest and actual != ref.digest:
            raise IntegrityError(
                f"{ref.with_member(None)}: the registry's manifest hashes to {actual}",
                reason="sha256-mismatch",
            )
        return bytes(body)


def parse_layers(body: bytes, where: str) -> list[Layer]:
    """The layers of an OCI image manifest; InvalidInput for anything else (an index...)."""
    try:
        doc: Any = json.loads(body)
    except ValueError as e:
        raise InvalidInput(f"{where}: the manifest is not JSON", reason="source-invalid") from e
    media = doc.get("mediaType") if isinstance(doc, dict) else None
    if media in INDEX_TYPES:
        raise InvalidInput(
            f"{where} is an image index (several platforms), not one package",
            reason="source-invalid",
        )
    layers = doc.get("layers") if isinstance(doc, dict) else None
    if not isinstance(layers, list):
        raise InvalidInput(f"{where}: the manifest lists no layers", reason="source-invalid")
    found = []
    for item in layers:
        ok = isinstance(item, dict) and isinstance(item.get("digest"), str)
        size = item.get("size") if ok else None
        if not ok or not isinstance(size, int) or size < 0:
            raise InvalidInput(f"{where}: a layer has no digest or size", reason="source-invalid")
        notes = item.get("annotations")
        title = notes.get(TITLE) if isinstance(notes, dict) else None
        found.append(Layer(item["digest"], size, title if isinstance(title, str) else None))
    return found


def _checked(chunks: Iterator[bytes], layer: Layer, url: str) -> Iterator[bytes]:
    """`chunks`, then an IntegrityError if the whole blob does not hash to its layer digest."""
    if not layer.digest.startswith("sha256:"):
        yield from chunks
        return
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        yield chunk
    # a short read is a drop (the loop retries it), not a verdict on the bytes
    if size == layer.size and "sha256:" + digest.hexdigest() != layer.digest:
        raise IntegrityError(
            f"{url}: the registry's blob does not hash to its layer digest {layer.digest}",
            reason="sha256-mismatch",
        )
