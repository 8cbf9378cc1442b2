"""`hotswap validate PATH...`: the command, its output formats and exit codes.

Registered into the main parser by `reconciler.cli.main`. A PATH is a file or a directory (its
*.yaml / *.yml, as the daemon reads a desired directory). Exit 0 every file is valid, 1 a file is
invalid, 2 usage (a PATH that does not exist) or a source that could not be reached. Output:
`file:line: message` lines (text), one JSON report (`--json`), or GitHub Actions annotations
(`--format github`: `::error file=F,line=L::message`, shown on the pull request's diff).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from reconciler.cli.exits import EXIT_FAILURE, EXIT_INVALID, EXIT_OK
from reconciler.cli.validate.checks import Options, Problem, check_file

EPILOG = """\
examples (CI on a GitOps repository):
  hotswap validate desired/                          # schema, local models, interfaces
  hotswap validate desired/ --fetch --trust-dir keys/ --format github
  hotswap validate /etc/hotswap/config.yaml          # a config file (kind: Config)

Exit 0 valid, 1 invalid, 2 usage or a source that could not be reached.
"""


def add_command(sub: Any) -> None:
    va = sub.add_parser(
        "validate",
        help="check desired-state and config files as a device would (for CI)",
        description="Check each file: YAML and schema (file:line), the model's bytes and sha256"
        " (local sources; remote ones with --fetch), the signed manifest against --trust-dir,"
        " and the ONNX interface against spec.interface.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    va.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    va.add_argument("--fetch", action="store_true", help="download remote sources and manifests")
    va.add_argument(
        "--trust-dir",
        dest="validate_trust_dir",  # not the device's: CI names the keys it checks against
        type=Path,
        metavar="DIR",
        help="check manifests and signatures against these trusted keys (and policy.yaml)",
    )
    va.add_argument("--format", choices=["text", "json", "github"], default="text")
    va.add_argument("--json", action="store_true", help="the same as --format json")
    va.set_defaults(handler=cmd_validate)


def files_of(paths: list[Path]) -> list[Path]:
    """The files to check, in order; FileNotFoundError names a PATH that does not exist."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(
                    p for p in path.iterdir()
                    if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file()
                )
            )  # fmt: skip
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path} does not exist")
    return found


def cmd_validate(args: argparse.Namespace) -> int:
    from reconciler.trust.policy import TrustConfigError, load_policy

    try:
        files = files_of(args.paths)
        policy = load_policy(args.validate_trust_dir) if args.validate_trust_dir else None
    except (FileNotFoundError, TrustConfigError) as e:
        print(f"hotswap validate: {e}", file=sys.stderr)
        return EXIT_INVALID
    options = Options(policy=policy, fetch=args.fetch)
    problems = [p for f in files for p in check_file(f, options)]
    fmt = "json" if args.json else args.format
    if fmt == "json":
        report = {"ok": not problems, "files": [str(f) for f in files],
                  "problems": [p.to_json() for p in problems]}  # fmt: skip
        print(json.dumps(report, indent=2))
    else:
        for p in problems:
            print(_github(p) if fmt == "github" else _text(p))
        if fmt == "text":
            print(f"{len(files)} files checked, {len(problems)} problems", file=sys.stderr)
    if any(p.unreachable for p in problems):
        return EXIT_INVALID
    return EXIT_FAILURE if problems else EXIT_OK


def _text(p: Problem) -> str:
    if p.message.startswith(p.file):  # the loader's own "file:line field: why"
        return p.message
    return f"{p.file}:{p.line or ''} {p.message}"


def _github(p: Problem) -> str:
    """An Actions workflow command; its message may not hold raw newlines or `%`."""
    message = p.message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    line = f",line={p.line}" if p.line else ""
    return f"::error file={p.file}{line}::{message}"
