"""`hotswap run`: the daemon's command line, turned into `DaemonOptions` for its wiring.

Registered into the main parser by `reconciler.cli.main`; `reconciler.cli.daemon` builds and
runs the daemon from the options. Sizes (`512M`, `2G`) and `HOST:PORT` are checked here, so a
typo is a usage error (exit 2) before anything starts.
"""

from __future__ import annotations

import argparse
from typing import Any

from reconciler.cli import gitopts as cli_gitopts
from reconciler.cli import package as cli_package
from reconciler.cli.daemon import DaemonOptions
from reconciler.cli.fleet_options import add_mqtt_options, mqtt_settings


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(
            f"--listen wants HOST:PORT, e.g. 127.0.0.1:8000 (got {value!r})"
        )
    return host.strip("[]") or "127.0.0.1", int(port)


def parse_grpc_listen(value: str) -> tuple[str, int] | None:
    if value.strip().lower() == "none":
        return None
    try:
        return parse_listen(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"--grpc-listen wants HOST:PORT, e.g. 127.0.0.1:8001, or none (got {value!r})"
        ) from None


def parse_size(value: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = value.strip().upper().removesuffix("IB").removesuffix("B")
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "")
    try:
        size = int(float(number) * units[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size like 512M or 2G, not {value!r}") from None
    if size <= 0:
        raise argparse.ArgumentTypeError(f"a positive size, not {value!r}")
    return size


def add_command(sub: Any, common_parent: argparse.ArgumentParser) -> None:
    run = sub.add_parser(
        "run",
        parents=[common_parent],
        help="run the daemon: serve models and reconcile desired state",
        description="Serve the KServe V2 API and reconcile desired state continuously. One daemon per state directory.",
    )
    run.add_argument(
        "--listen",
        type=parse_listen,
        default=("127.0.0.1", 8000),
        metavar="HOST:PORT",
        help="HTTP address (default: 127.0.0.1:8000; binds loopback unless told otherwise)",
    )
    run.add_argument(
        "--grpc-listen",
        type=parse_grpc_listen,
        default=("127.0.0.1", 8001),
        metavar="HOST:PORT|none",
        help="gRPC address (KServe V2 / Triton GRPCInferenceService; default: 127.0.0.1:8001;"
        " 'none' turns gRPC off)",
    )
    run.add_argument(
        "--resync",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="periodic full resync besides file events (default: %(default)s)",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=None,
        help="inference worker threads (default: one per core)",
    )
    _add_resource_options(run)
    _add_log_and_connection_options(run)
    cli_package.add_trust_dir_option(run)
    run.add_argument(
        "--strict-readiness",
        action="store_true",
        help="/v2/health/ready only while every desired model serves (default: while every model"
        " that has served still serves; a new model that failed leaves the device ready)",
    )
    add_mqtt_options(run)  # fleet: wake and report over MQTT
    cli_gitopts.add_fleet_options(run, parse_size)  # git source, device identity, rate limit
    run.set_defaults(handler=cmd_run)


def _add_log_and_connection_options(run: argparse.ArgumentParser) -> None:
    """The access log, log level and format, and the header deadline of HTTP connections."""
    run.add_argument(
        "--access-log",
        action="store_true",
        help="log every inference request (model, version, status, latency, request id)",
    )
    run.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="close a connection whose request headers are not complete this long after it"
        " could send them (default: %(default)s)",
    )
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument(
        "--log-json",
        action="store_true",
        default=None,
        help="JSON logs even on a terminal (the default when not a TTY)",
    )


def _add_resource_options(run: argparse.ArgumentParser) -> None:
    """Memory, TensorRT and thread limits."""
    run.add_argument(
        "--memory-budget",
        type=parse_size,
        default=None,
        metavar="SIZE",
        help="memory all loaded model instances may use, e.g. 512M or 2G (default: no limit"
        " but the GPU's free memory for TensorRT). When a new version cannot be loaded beside"
        " the serving one, the swap is sequential: unload, load, prove, or reload the old one on"
        " failure; the model is unavailable meanwhile and the journal records for how long",
    )
    run.add_argument(
        "--trt-workspace",
        type=parse_size,
        default=None,
        metavar="SIZE",
        help="TensorRT builder workspace limit, e.g. 1G (default 1G); part of the engine cache key",
    )
    run.add_argument(
        "--trt-build-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="kill a TensorRT engine build that runs longer (default 1800)",
    )
    _add_probe_options(run)
    run.add_argument(
        "--threads",
        type=int,
        default=1,
        help="ONNX Runtime intra-op threads per model instance (default: %(default)s; the worker"
        " pool gives parallelism across requests, so versions loaded side by side during a swap"
        " never oversubscribe the cores; raise it for large models served one request at a time)",
    )


def _add_probe_options(run: argparse.ArgumentParser) -> None:
    """Limits of a new model's first run, probed in a child process (docs/probe.md)."""
    run.add_argument(
        "--probe-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="a new model's first inferences, run in a child process before it is loaded, are"
        " killed after this long and the version quarantined (probe-timeout; default %(default)s)",
    )
    run.add_argument(
        "--probe-memory",
        type=parse_size,
        default=None,
        metavar="SIZE",
        help="memory the model may take in that child, e.g. 2G (default: 1G + 4x the model +"
        " 64x its largest input at shapes.max); more is refused and the version quarantined"
        " (probe-memory)",
    )
    run.add_argument(
        "--no-probe",
        dest="probe",
        action="store_false",
        help="load new models in the serving process without probing them in a child first",
    )


def cmd_run(args: argparse.Namespace) -> int:
    from reconciler.cli.daemon import run_daemon
    from reconciler.cli.logs import configure

    configure(args.log_level, args.log_json)
    return run_daemon(daemon_options(args))


def daemon_options(args: argparse.Namespace) -> DaemonOptions:
    host, port = args.listen
    return DaemonOptions(
        desired_dir=args.desired,
        state_dir=args.state_dir,
        trust_dir=args.trust_dir,
        host=host,
        port=port,
        resync_s=args.resync,
        workers=args.workers,
        threads=args.threads,
        memory_budget=args.memory_budget,
        trt_workspace=args.trt_workspace,
        trt_build_timeout=args.trt_build_timeout,
        probe_timeout=args.probe_timeout,
        probe_memory=args.probe_memory,
        probe=args.probe,
        access_log=args.access_log,
        grpc_listen=args.grpc_listen,
        strict_readiness=args.strict_readiness,
        header_timeout_s=args.header_timeout,
        strict_journal=getattr(args, "strict_journal", False),
        mqtt=mqtt_settings(args),
        **cli_gitopts.daemon_fields(args),
    )
