"""`hotswap publish ... --to oci://HOST/NAME:TAG`: the package directory pushed to a registry.

`cli.package` registers the options (`add_push_options`) and calls `push_to_registry` once the
package directory is written and signed; the push itself is `reconciler.fetch.oci_push`. The
registry's credentials come from a credentials.yaml (`--credentials`, the format a device keeps
in its trust dir); plain http only with `--allow-http` and `plain_http: true` for the host.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_push_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--to",
        metavar="oci://HOST/NAME:TAG",
        help="also push the package to this OCI registry (one artifact, one layer per file)",
    )
    parser.add_argument(
        "--credentials",
        type=Path,
        metavar="FILE",
        help="credentials.yaml with the registry's login (as in a device's trust dir)",
    )
    parser.add_argument(
        "--allow-http",
        action="store_true",
        help="allow plain http to a registry whose credentials entry says plain_http",
    )


def push_to_registry(
    package: Path, target: str, credentials: Path | None, allow_http: bool
) -> None:
    """Push `package`; print the reference to pin (raises HotswapError, as handlers do)."""
    from reconciler.fetch.credentials import Credentials
    from reconciler.fetch.oci_push import push_package
    from reconciler.ops.credentials import parse_credentials

    creds = Credentials()
    if credentials is not None:
        creds = parse_credentials(credentials.read_bytes(), credentials.parent, str(credentials))
    pushed = push_package(package, target, credentials=creds, allow_http=allow_http)
    print(f"pushed {package} to {pushed.reference}")
    print("desired state (the digest pins every file; sha256 pins the model):")
    print(f"      source: {pushed.reference}")
