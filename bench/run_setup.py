"""What a bench run of either scenario starts from: the CLI's arguments, where it writes, its
temp dir, the example kit built there, the request and the daemon's default ORT settings.

Built once by swap_under_load.main (prepare) and handed to the scenario it runs
(swap_under_load.run_swap_scenario or canary_under_load.main_canary), so both scenarios start
from the same kit, payload and settings, built in the same order, and a new scenario is one
more function of a RunSetup.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from example_kit import Kit, build_kit
from reporting import log
from request_bodies import Payload, make_payload
from servers import daemon_defaults


@dataclass(frozen=True)
class RunSetup:
    args: argparse.Namespace
    out: Path  # the results dir: <out>/<scenario>-<stamp>.json, .png, .daemon.log
    stamp: str  # UTC timestamp of the run, in every file name
    tmp: Path  # the run's temp dir (models, desired/, state/), removed at the end
    kit: Kit
    payload: Payload
    settings: dict[str, int]  # servers.daemon_defaults(): ORT intra-op threads, workers


def prepare(args: argparse.Namespace, out: Path, stamp: str, tmp: Path) -> RunSetup:
    log(f"building the example models in {tmp}")
    kit = build_kit(tmp)
    payload = make_payload(args.batch, args.seed, args.protocol)
    return RunSetup(args, out, stamp, tmp, kit, payload, daemon_defaults())
