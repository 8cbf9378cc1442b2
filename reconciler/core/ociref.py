"""`oci://` model sources: the reference grammar, parsed without I/O.

The desired-state loader (`source.spec`) checks a `source: oci://...` with `parse_oci`, and the
OCI transport (`fetch.oci`) uses the same value to build registry URLs, so a reference the
loader accepted is one the transport can pull. The grammar is the distribution project's
(`docker pull` names): `oci://HOST[:PORT]/NAME[:TAG][@sha256:HEX][#MEMBER]`.

`@sha256:` pins the OCI *manifest* (what `docker pull name@digest` pins): the manifest lists
every file of the package by digest, so one digest fixes the model, hotswap's manifest and the
signature together. The model file is still pinned by `spec.model.sha256`: the transport takes
the layer whose digest is that sha256. `#MEMBER` is internal (never written in desired state):
it names one file of the package, by its `org.opencontainers.image.title` or by `sha256:HEX`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCHEME = "oci://"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REF = re.compile(
    rf"^(?P<host>{_HOST})/(?P<name>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?"
    r"(?:#(?P<member>[^#]+))?$"
)


class OciRefError(ValueError):
    """Not an oci:// reference this grammar accepts; the message says which part is wrong."""


@dataclass(frozen=True)
class OciRef:
    host: str  # "registry.example" or "127.0.0.1:5000"
    name: str  # repository: "models/classifier"
    tag: str | None = None
    digest: str | None = None  # "sha256:<hex>" of the OCI manifest
    member: str | None = None  # one file of the package: a title or "sha256:<hex>"

    @property
    def reference(self) -> str:
        """What `GET /v2/<name>/manifests/<reference>` asks for: the digest when pinned."""
        return self.digest or self.tag or "latest"

    def with_member(self, member: str | None) -> OciRef:
        return OciRef(self.host, self.name, self.tag, self.digest, member)

    def __str__(self) -> str:
        text = f"{SCHEME}{self.host}/{self.name}"
        text += f":{self.tag}" if self.tag else ""
        text += f"@{self.digest}" if self.digest else ""
        return text + (f"#{self.member}" if self.member else "")


def is_oci(url: str) -> bool:
    return url[: len(SCHEME)].lower() == SCHEME


def parse_oci(url: str) -> OciRef:
    """The parts of `url`; OciRefError says what is wrong (lowercase name, bad digest...)."""
    if not is_oci(url):
        raise OciRefError(f"{url!r} does not start with {SCHEME}")
    rest = url[len(SCHEME) :]
    m = _REF.match(rest)
    if m is None:
        raise OciRefError(_why(rest))
    return OciRef(m["host"], m["name"], m["tag"], m["digest"], m["member"])


def _why(rest: str) -> str:
    host, _, path = rest.partition("/")
    if not host or not path:
        return "want oci://HOST[:PORT]/NAME[:TAG][@sha256:HEX]"
    if "@" in path and not re.search(r"@sha256:[0-9a-f]{64}(#|$)", path):
        return "the digest must be @sha256: and 64 lowercase hex digits"
    return (
        "the repository name must be lowercase letters, digits and . _ - separated by /,"
        " and the tag letters, digits, _ . - (at most 128)"
    )
