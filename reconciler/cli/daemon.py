"""The daemon, wired: the one place where journal, runtime, metrics, controller and the HTTP and
gRPC servers are built and connected, started and shut down.

Called by `hotswap run` (`reconciler.cli.run`) with `DaemonOptions`, the command line turned into
values. Every setting goes into a constructor here (the controller's keyword arguments, the
app's), never into an attribute set afterwards. The order is what recovery needs: hold the
state directory's lock, open and verify the journal (refusing to run on one it cannot read),
build everything, restore what the journal says was last promoted (unless its chain is
broken), then serve; the shutdown runs to the end whatever stops the server.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.cli.exits import EXIT_FAILURE, EXIT_INVALID, EXIT_OK
from reconciler.cli.version import hotswap_version
from reconciler.core.names import Event, Phase

if TYPE_CHECKING:
    from reconciler.loop.controller import Controller
    from reconciler.state.journal import Journal, VerifyResult


@dataclass(frozen=True)
class DaemonOptions:
    desired_dir: Path
    state_dir: Path
    trust_dir: Path | None = None  # None: STATE_DIR/trust
    host: str = "127.0.0.1"
    port: int = 8000
    resync_s: float = 30.0  # periodic full resync besides file events
    workers: int | None = None  # inference worker threads (None: one per core)
    threads: int = 1  # ONNX Runtime intra-op threads per model instance
    memory_budget: int | None = None  # bytes all loaded instances may use (None: no limit)
    trt_workspace: int | None = None  # TensorRT builder workspace (part of the cache key)
    trt_build_timeout: float | None = None  # seconds before an engine build is killed
    access_log: bool = False
    grpc_listen: tuple[str, int] | None = ("127.0.0.1", 8001)  # None: no gRPC
    strict_readiness: bool = False  # ready only while every desired model serves


@dataclass(frozen=True)
class Daemon:
    controller: Controller
    server: Any  # uvicorn.Server
    grpc: Any = None  # runtime.serving.grpc.server.GrpcServer, or None when off


def run_daemon(options: DaemonOptions) -> int:
    """Run until stopped (SIGTERM, SIGINT); the exit code of `hotswap run`."""
    import structlog

    from reconciler.state.lock import AlreadyRunning, StateLock

    lock = StateLock(options.state_dir)
    try:
        lock.acquire()
    except AlreadyRunning as e:
        print(f"hotswap: {e}", file=sys.stderr)
        return EXIT_INVALID
    served: bool | None = None
    try:
        opened = open_journal(options.state_dir / "journal.db")
        if opened is None:
            return EXIT_FAILURE
        journal, check = opened
        try:
            served = _recover_and_serve(options, journal, check)
        finally:
            journal.close()
    finally:
        lock.release()
    structlog.get_logger("hotswap").info("daemon.stopped")
    return EXIT_OK if served else EXIT_FAILURE


def open_journal(path: Path) -> tuple[Journal, VerifyResult] | None:
    """The journal and its verification; None (with the reason printed) when it is unreadable."""
    import sqlite3

    from reconciler.state.journal import Journal, VerifyResult

    journal: Journal | None = None
    try:
        journal = Journal(path)
        check = journal.verify()
    except sqlite3.DatabaseError as e:
        check = VerifyResult(False, 0, None, str(e))
    if journal is not None and (check.ok or check.first_bad_seq is not None):
        return journal, check
    # Unreadable is refused, not repaired in passing: what it held is evidence.
    print(
        f"hotswap: the journal {path} cannot be read ({check.problem}). The daemon does"
        f" not run on a journal it cannot read. Keep it for inspection and start a new one:"
        f" mv {path} {path}.damaged (the daemon then serves what desired"
        " state asks for, fully verified again).",
        file=sys.stderr,
    )
    if journal is not None:
        journal.close()
    return None


def wire(options: DaemonOptions, journal: Journal) -> Daemon:
    """Build the runtime, the controller and the HTTP server around an open journal."""
    import uvicorn

    from reconciler.loop.controller import Controller
    from runtime import backends
    from runtime.serving.metrics import Metrics
    from runtime.serving.server import app_for, inference_service
    from runtime.serving.slot import Repository

    repo = Repository()
    # Process-wide: the runtime builds its TensorRT backend (and its cache identity) from these.
    backends.configure(
        "tensorrt",
        workspace_bytes=options.trt_workspace,
        build_timeout_s=options.trt_build_timeout,
    )
    metrics = Metrics()
    metrics.set_build(hotswap_version())
    metrics.watch_state(repo.describe, journal.size_bytes)
    controller = Controller(
        options.desired_dir,
        options.state_dir,
        journal,
        repo,
        resync_s=options.resync_s,
        threads=options.threads,
        memory_budget=options.memory_budget,
        metrics=metrics,
        trust_dir=options.trust_dir,
        strict_readiness=options.strict_readiness,
    )
    service = inference_service(
        repo,
        controller.ready,
        hotswap_version(),
        metrics=metrics,
        workers=options.workers,
        access_log=options.access_log,
    )
    config = uvicorn.Config(
        app_for(service),
        host=options.host,
        port=options.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    return Daemon(controller, uvicorn.Server(config), _grpc_server(service, options.grpc_listen))


def _grpc_server(service: Any, listen: tuple[str, int] | None) -> Any:
    """The gRPC server over the same InferenceService as HTTP (not bound until `serve`)."""
    if listen is None:
        return None
    from runtime.serving.grpc.server import GrpcServer

    return GrpcServer(service, *listen)


def _recover_and_serve(options: DaemonOptions, journal: Journal, check: VerifyResult) -> bool:
    """Wire, restore, serve; True when the server started."""
    import structlog

    log = structlog.get_logger("hotswap")
    daemon = wire(options, journal)
    log.info(
        "daemon.starting",
        desired=str(options.desired_dir),
        state_dir=str(options.state_dir),
        listen=f"{options.host}:{options.port}",
        grpc_listen=daemon.grpc.address if daemon.grpc else None,
        pid=os.getpid(),
    )
    if not check.ok:
        # Readable but edited: its records cannot say what was last promoted. Start from desired
        # state (every step verified again) rather than restore what the journal claims.
        log.error("journal.chain-broken", seq=check.first_bad_seq, problem=check.problem)
        journal.append(
            "-",
            Event.JOURNAL,
            Phase.FAILED,
            detail={"problem": check.problem, "first_bad_seq": check.first_bad_seq},
        )
    daemon.controller.recover(restore=check.ok)
    return serve(daemon)


def serve(daemon: Daemon) -> bool:
    """Run the controller and the HTTP server until the server stops; True if it started."""
    import signal

    server = daemon.server
    # uvicorn re-raises a SIGTERM it caught once its own shutdown is done; under the default
    # handler that killed the process before the `finally` below stopped the controller and
    # closed the journal. This handler makes the re-raise (or a SIGTERM before uvicorn has
    # installed its own) a request to stop, so the shutdown always runs to the end.
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    if not _start_grpc(daemon):
        daemon.controller.ctx.shutdown()  # what recovery started; the loop never ran
        return False
    daemon.controller.start()
    try:
        server.run()
    finally:
        if daemon.grpc is not None:
            daemon.grpc.stop()  # after HTTP: new calls refused, those in flight drained
        daemon.controller.stop()
    return bool(server.started)


def _start_grpc(daemon: Daemon) -> bool:
    """Bind gRPC before anything serves; False (logged) when its address is taken."""
    import structlog

    if daemon.grpc is None:
        return True
    try:
        daemon.grpc.start()
    except OSError as e:
        structlog.get_logger("hotswap").error("grpc.listen-failed", error=str(e))
        return False
    return True
