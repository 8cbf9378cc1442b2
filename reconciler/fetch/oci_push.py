"""Push a package directory to an OCI registry as one artifact, the way oras pushes files.

`hotswap publish --to oci://HOST/NAME:TAG` calls `push_package` after writing the package
directory. Every regular file of the directory becomes a layer (media type
`application/octet-stream`, its file name in the `org.opencontainers.image.title` annotation),
the config is the OCI empty descriptor (`application/vnd.oci.empty.v1+json`, `{}`) and the
manifest carries `artifactType: application/vnd.hotswap.model.v1` — so `oras pull` gives back
the same directory and `OciFetcher` finds each file by name. Blobs the registry already holds
are not sent again (HEAD first), each upload is the distribution API's monolithic
POST-then-PUT, and the manifest goes last, under the tag. Returns the manifest digest: the
`@sha256:` to pin in desired state.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx

from reconciler.core.errors import InvalidInput, TransientError
from reconciler.fetch.credentials import Credentials
from reconciler.fetch.http import DEFAULT_TIMEOUT, HttpFetcher, refusal
from reconciler.fetch.oci import MANIFEST_TYPE, TITLE, parse_ref, registry_base

ARTIFACT_TYPE = "application/vnd.hotswap.model.v1"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
LAYER_TYPE = "application/octet-stream"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Pushed:
    reference: str  # oci://HOST/NAME:TAG@sha256:... (what desired state pins)
    digest: str  # the manifest's
    layers: dict[str, str]  # file name -> layer digest


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        yield from iter(lambda: f.read(CHUNK), b"")


class _Pusher:
    def __init__(self, http: HttpFetcher, base: str) -> None:
        self.http = http
        self.base = base

    def _send(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        request = self.http.client(url).build_request(method, url, **kwargs)  # type: ignore[arg-type]
        response = self.http.send(request)
        response.read()
        return response

    def blob(self, digest: str, size: int, body: bytes | Path) -> None:
        if self._send("HEAD", f"{self.base}/blobs/{digest}").status_code == 200:
            return
        started = self._send("POST", f"{self.base}/blobs/uploads/")
        if started.status_code != 202 or "location" not in started.headers:
            raise refusal(started)
        url = httpx.URL(self.base).join(started.headers["location"])
        url = url.copy_merge_params({"digest": digest})
        content = body if isinstance(body, bytes) else _file_chunks(body)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        try:
            done = self._send("PUT", str(url), content=content, headers=headers)
        except httpx.StreamConsumed as e:  # the registry asked for credentials again mid-push
            raise TransientError(
                f"{self.base}: the registry asked for credentials again during an upload",
                reason="auth-failed",
            ) from e
        if done.status_code != 201:
            raise refusal(done)

    def manifest(self, reference: str, body: bytes) -> None:
        headers = {"Content-Type": MANIFEST_TYPE}
        done = self._send(
            "PUT", f"{self.base}/manifests/{reference}", content=body, headers=headers
        )
        if done.status_code != 201:
            raise refusal(done)


def artifact_manifest(layers: list[dict[str, object]], now: datetime) -> bytes:
    """The OCI image manifest of a hotswap package, oras-style."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": EMPTY_TYPE,
            "digest": "sha256:" + hashlib.sha256(EMPTY).hexdigest(),
            "size": len(EMPTY),
        },
        "layers": layers,
        "annotations": {
            "org.opencontainers.image.created": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }
    return json.dumps(manifest, indent=2, sort_keys=True).encode()


def push_package(
    directory: Path,
    target: str,
    *,
    credentials: Credentials | None = None,
    allow_http: bool = False,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    now: datetime | None = None,
) -> Pushed:
    """Push every file in `directory` to `target` (oci://HOST/NAME:TAG) as one artifact."""
    ref = parse_ref(target)
    if ref.digest or ref.member or not ref.tag:
        raise InvalidInput(
            f"{target}: push to a tag (oci://HOST/NAME:TAG), without @digest", reason="bad-target"
        )
    files = sorted(p for p in Path(directory).iterdir() if p.is_file() and p.name[0] != ".")
    if not files:
        raise InvalidInput(f"{directory} holds no files to push", reason="source-missing")
    creds = credentials or Credentials()
    http = HttpFetcher(allow_http, timeout, credentials=creds)
    try:
        pusher = _Pusher(http, registry_base(ref, creds, allow_http))
        pusher.blob("sha256:" + hashlib.sha256(EMPTY).hexdigest(), len(EMPTY), EMPTY)
        layers: list[dict[str, object]] = []
        for path in files:
            digest, size = _sha256_file(path), path.stat().st_size
            pusher.blob(digest, size, path)
            layers.append(
                {"mediaType": LAYER_TYPE, "digest": digest, "size": size,
                 "annotations": {TITLE: path.name}}
            )  # fmt: skip
        body = artifact_manifest(layers, now or datetime.now(timezone.utc))
        pusher.manifest(ref.tag, body)
    finally:
        http.close()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    names = {str(item["annotations"][TITLE]): str(item["digest"]) for item in layers}  # type: ignore[index]
    return Pushed(f"oci://{ref.host}/{ref.name}:{ref.tag}@{digest}", digest, names)
