"""`hotswap keygen | sign | publish | verify`: make and check signed model packages.

Registered into the main parser by `reconciler.cli.main` (`add_commands`); each subcommand carries its
handler as `args.handler`. Heavy imports (cryptography, onnx) happen inside the handlers so the
other commands start fast. Exit codes as everywhere: 0 ok, 1 does not verify / failed,
2 usage, missing files or invalid input.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.trust.manifest import Manifest
    from reconciler.trust.policy import Authorization, TrustPolicy

from reconciler.cli.exits import EXIT_FAILURE, EXIT_INVALID, EXIT_OK
from reconciler.cli.push import add_push_options, push_to_registry

SERVE_EPILOG = """\
serving a registry: the directory is plain files, so any static HTTP server will do, e.g.
  python -m http.server --directory REGISTRY 8080
or an nginx `location` block pointing at it (see README). Desired state then names
  source: https://HOST/NAME/VERSION/model.onnx  and  manifest: https://HOST/NAME/VERSION/manifest.json
"""

KEYGEN_EPILOG = """\
example:
  hotswap keygen --out keys/
  # keep keys/hotswap.key secret (on the publishing machine only); on every device:
  cp keys/hotswap.pub state/trust/
"""

SIGN_EPILOG = """\
examples:
  hotswap sign registry/classifier/3/manifest.json --key keys/hotswap.key
  # key rollover: add the new key's signature beside the old one, ship the new hotswap.pub
  # to the devices, then stop signing with the old key
  hotswap sign registry/classifier/3/manifest.json --key newkeys/hotswap.key
"""

PUBLISH_EPILOG = (
    """\
examples:
  hotswap publish model.onnx --name classifier --version 3 --key keys/hotswap.key --out registry/
  hotswap publish model.onnx --name classifier --version 3 --key keys/hotswap.key \\
      --out registry/ --expires 90d           # or an absolute date: --expires 2027-01-01

writes registry/classifier/3/{model.onnx, manifest.json, manifest.json.sig}. A published
version is immutable: publishing other bytes under it is refused, the same bytes are a no-op.

"""
    + SERVE_EPILOG
)

VERIFY_EPILOG = """\
examples:
  hotswap verify registry/classifier/3                 # a package directory
  hotswap verify registry/classifier/3/manifest.json --trust-dir /etc/hotswap/trust

Checks the signature against the trusted keys (default: STATE_DIR/trust, or $HOTSWAP_TRUST_DIR),
the sha256 and size of every file the manifest lists, and the expiry, exactly as the daemon
would. Exit 0 verified, 1 does not verify, 2 usage or missing files.
"""


def add_trust_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-dir",
        type=Path,
        default=None,  # STATE_DIR/trust (finish_args); the config layer reads $HOTSWAP_TRUST_DIR
        metavar="DIR",
        help="device trust policy: trusted *.pub keys and policy.yaml (default: STATE_DIR/trust,"
        " or $HOTSWAP_TRUST_DIR); never read from desired state",
    )


def finish_args(args: argparse.Namespace) -> argparse.Namespace:
    """Fill defaults that depend on other options (`--trust-dir` defaults to STATE_DIR/trust)."""
    if hasattr(args, "trust_dir") and args.trust_dir is None:
        args.trust_dir = Path(args.state_dir) / "trust"
    return args


def add_commands(sub: Any, common_parent: argparse.ArgumentParser) -> None:
    """Register keygen, sign, publish and verify on the main parser's subparsers."""
    _add_keygen(sub)
    _add_sign(sub)
    _add_publish(sub)
    _add_verify(sub, common_parent)


_RAW = argparse.RawDescriptionHelpFormatter


def _add_keygen(sub: Any) -> None:
    kg = sub.add_parser(
        "keygen",
        help="make an ed25519 signing key pair for publishing models",
        description="Write hotswap.key (private, PKCS8 PEM, mode 0600) and hotswap.pub into DIR."
        " Never overwrites an existing key.",
        epilog=KEYGEN_EPILOG,
        formatter_class=_RAW,
    )
    kg.add_argument("--out", type=Path, required=True, metavar="DIR", help="where to write them")
    kg.set_defaults(handler=cmd_keygen)


def _add_sign(sub: Any) -> None:
    sg = sub.add_parser(
        "sign",
        help="sign a manifest.json (adds a signature when MANIFEST.sig exists)",
        description="Sign the exact bytes of a manifest; writes MANIFEST.sig, or adds this key's"
        " signature to it (a rollover carries two).",
        epilog=SIGN_EPILOG,
        formatter_class=_RAW,
    )
    sg.add_argument("manifest", type=Path, metavar="MANIFEST")
    sg.add_argument(
        "--key", type=Path, required=True, metavar="KEY", help="hotswap.key to sign with"
    )
    sg.set_defaults(handler=cmd_sign)


def _add_publish(sub: Any) -> None:
    pb = sub.add_parser(
        "publish",
        help="package and sign a model into a registry directory",
        description="Copy MODEL into REGISTRY/NAME/VERSION/model.onnx with a signed manifest"
        " (name, version, sha256 and size, the interface read from the ONNX graph, created time,"
        " optional expiry).",
        epilog=PUBLISH_EPILOG,
        formatter_class=_RAW,
    )
    pb.add_argument("model", type=Path, metavar="MODEL.onnx")
    pb.add_argument("--name", required=True, help="model name (as metadata.name in desired state)")
    pb.add_argument("--version", required=True, help="version label (as spec.model.version)")
    pb.add_argument(
        "--key", type=Path, required=True, metavar="KEY", help="hotswap.key to sign with"
    )
    pb.add_argument(
        "--out", type=Path, required=True, metavar="REGISTRY", help="registry directory"
    )
    pb.add_argument(
        "--expires",
        metavar="WHEN",
        help="devices refuse the package after this: a duration (90m, 12h, 30d, 8w) or a UTC"
        " date/time (2027-01-01, 2027-01-01T12:00:00Z)",
    )
    add_push_options(pb)  # --to oci://HOST/NAME:TAG, --credentials FILE
    pb.set_defaults(handler=cmd_publish)


def _add_verify(sub: Any, common_parent: argparse.ArgumentParser) -> None:
    vf = sub.add_parser(
        "verify",
        parents=[common_parent],
        help="check a signed package against this device's trust policy",
        description="Verify a package directory (REGISTRY/NAME/VERSION) or its manifest.json.",
        epilog=VERIFY_EPILOG,
        formatter_class=_RAW,
    )
    vf.add_argument("path", type=Path, metavar="PATH")
    add_trust_dir_option(vf)
    vf.add_argument("--json", action="store_true", help="machine-readable output")
    vf.set_defaults(handler=cmd_verify)


def parse_expires(text: str, now: datetime) -> datetime:
    """`30d`-style durations (m, h, d, w) from `now`, or an absolute date / UTC time."""
    from reconciler.core.errors import InvalidInput

    if m := re.fullmatch(r"(\d+)([mhdw])", text.strip()):
        unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
        return now + timedelta(**{unit: int(m.group(1))})
    try:
        if re.fullmatch(r"\d{4}-\d\d-\d\d", text):
            return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise InvalidInput(
            f"--expires {text!r}: want a duration like 30d or a date like 2027-01-01", "bad-expiry"
        ) from e
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _run(what: str, fn: Any, *fn_args: Any) -> int:
    """Call a handler body; turn hotswap errors into a message and the exit code."""
    from reconciler.core.errors import HotswapError, IntegrityError, InvalidInput

    try:
        fn(*fn_args)
    except InvalidInput as e:
        print(f"hotswap {what}: {e} [{e.reason}]", file=sys.stderr)
        return EXIT_INVALID
    except IntegrityError as e:
        print(f"hotswap {what}: DOES NOT VERIFY: {e} [{e.reason}]", file=sys.stderr)
        return EXIT_FAILURE
    except HotswapError as e:
        print(f"hotswap {what}: {e} [{e.reason}]", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as e:
        print(f"hotswap {what}: {e}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


def cmd_keygen(args: argparse.Namespace) -> int:
    def body() -> None:
        from reconciler.trust.signing import generate_keypair

        key, pub, kid = generate_keypair(args.out)
        print(f"wrote {key} (private: keep it secret, mode 0600)")
        print(f"wrote {pub} (key id {kid})")
        print(f"trust it on a device: copy {pub.name} into STATE_DIR/trust/ (or --trust-dir)")

    return _run("keygen", body)


def cmd_sign(args: argparse.Namespace) -> int:
    def body() -> None:
        from reconciler.core.errors import InvalidInput
        from reconciler.trust.signing import sign_manifest_file

        if not args.manifest.is_file():
            raise InvalidInput(f"{args.manifest} does not exist", reason="source-missing")
        sig, kid = sign_manifest_file(args.manifest, args.key)
        print(f"signed {args.manifest} with key {kid}: {sig}")

    return _run("sign", body)


def cmd_publish(args: argparse.Namespace) -> int:
    def body() -> None:
        from reconciler.trust.manifest import MANIFEST_FILE, MODEL_FILE
        from reconciler.trust.signing import (
            file_digest,
            key_id,
            load_private_key,
            publish,
        )

        now = datetime.now(timezone.utc)
        expires = parse_expires(args.expires, now) if args.expires else None
        already = (args.out / args.name / args.version / "manifest.json.sig").exists()
        pkg = publish(
            args.model, args.name, args.version, args.key, args.out, expires=expires, now=now
        )
        kid = key_id(load_private_key(args.key).public_key())
        model_sha, size = file_digest(pkg / MODEL_FILE)
        manifest_sha, _ = file_digest(pkg / MANIFEST_FILE)
        if already:
            print(f"{pkg} already holds these bytes, signed: nothing to do")
        else:
            print(f"published {args.name} v{args.version} in {pkg} (key {kid})")
        print(f"  model sha256 {model_sha} ({size} bytes); manifest sha256 {manifest_sha}")
        print("desired state:")
        print("  spec:\n    model:")
        print(f'      version: "{args.version}"')
        print(f"      source: <registry URL>/{args.name}/{args.version}/{MODEL_FILE}")
        print(f"      sha256: {model_sha}")
        print(f"      manifest: <registry URL>/{args.name}/{args.version}/{MANIFEST_FILE}")
        if args.to:
            push_to_registry(pkg, args.to, args.credentials, args.allow_http)

    return _run("publish", body)


def verify_package(
    path: Path, policy: TrustPolicy, now: datetime
) -> tuple[Manifest, Authorization]:
    """Check a package on disk as a device would: signature, every file's sha256 and size,
    expiry, min_version. InvalidInput for missing files, IntegrityError when it does not verify."""
    from reconciler.core.errors import IntegrityError, InvalidInput
    from reconciler.trust.manifest import MANIFEST_FILE, MODEL_FILE, parse_manifest
    from reconciler.trust.policy import authorize, check_signatures
    from reconciler.trust.signing import file_digest

    manifest_path = path / MANIFEST_FILE if path.is_dir() else path
    if not manifest_path.is_file():
        raise InvalidInput(f"{manifest_path} does not exist", reason="source-missing")
    manifest = manifest_path.read_bytes()
    sig_path = manifest_path.with_name(manifest_path.name + ".sig")  # manifest.json.sig
    signature = sig_path.read_bytes() if sig_path.is_file() else None
    if signature is not None:
        check_signatures(policy, manifest, signature)  # before trusting a byte of the manifest
    parsed = parse_manifest(manifest)
    actual: dict[str, tuple[str, int]] = {}
    for fname, (sha, size) in sorted(parsed.files.items()):
        fpath = manifest_path.parent / fname
        if not fpath.is_file():
            raise InvalidInput(f"{fpath} (listed in the manifest) does not exist", "source-missing")
        actual[fname] = file_digest(fpath)
        if actual[fname][1] != size:
            raise IntegrityError(
                f"{fpath} is {actual[fname][1]} bytes, the manifest says {size}", "size-mismatch"
            )
        if actual[fname][0] != sha:
            raise IntegrityError(
                f"{fpath} has sha256 {actual[fname][0]}, the manifest says {sha}", "sha256-mismatch"
            )
    auth = authorize(
        policy,
        name=parsed.name,
        version=parsed.version,
        sha256=actual[MODEL_FILE][0],
        manifest=manifest,
        signature=signature,
        now=now,
    )
    return parsed, auth


def cmd_verify(args: argparse.Namespace) -> int:
    def body() -> None:
        from reconciler.trust.policy import load_policy

        policy = load_policy(args.trust_dir)
        parsed, auth = verify_package(args.path, policy, datetime.now(timezone.utc))
        if args.json:
            report = {"name": parsed.name, "version": parsed.version, **auth.to_json()}
            print(json.dumps({**report, "trust": policy.to_json()}, indent=2))
            return
        who = (
            f"signed by trusted key {auth.keyid}"
            if auth.signed
            else f"UNSIGNED (accepted only because allow_unsigned is set in {policy.source})"
        )
        print(f"ok: {parsed.name} v{parsed.version} {who}")
        print(f"  manifest sha256 {auth.manifest_sha256}")
        for fname, (sha, size) in sorted(parsed.files.items()):
            print(f"  {fname} sha256 {sha} ({size} bytes)")
        print(f"  created {parsed.created}, expires {auth.expires or 'never'}")

    return _run("verify", body)
