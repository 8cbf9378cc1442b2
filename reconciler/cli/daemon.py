"""The daemon, wired: the one place where journal, runtime, metrics, controller and the HTTP and
gRPC servers are built and connected, started and shut down.

Called by `hotswap run` (`reconciler.cli.run`) with `DaemonOptions`, the command line turned into
values. Every setting goes into a constructor here (the controller's keyword arguments, the
app's), never into an attribute set afterwards. The order is what recovery needs: hold the
state directory's lock, open and check the journal (`reconciler.state.journal_open`: one
SQLite cannot read is moved aside for a new one, or refused with `--strict-journal`), build
everything, restore what the journal says was last promoted (unless it is not trusted: edited,
shortened, replaced), then serve; the shutdown runs to the end whatever stops the server.

Under systemd (`Type=notify`, $NOTIFY_SOCKET) the daemon says READY=1 once the server listens,
after restore, so "started" means "serving the last good versions"; the controller pings the
watchdog and keeps STATUS= current; STOPPING=1 opens the shutdown (docs/systemd.md).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.cli.exits import EXIT_FAILURE, EXIT_INVALID, EXIT_OK
from reconciler.cli.version import hotswap_version
from reconciler.core.names import Event, Phase

if TYPE_CHECKING:
    from reconciler.core.device import DeviceIdentity
    from reconciler.fleet.mqtt import FleetReporter, MqttSettings
    from reconciler.loop.controller import Controller
    from reconciler.loop.gitpoll import GitSource
    from reconciler.loop.sdnotify import Notifier
    from reconciler.source.gitsync import GitSourceConfig
    from reconciler.state.journal import Journal
    from reconciler.state.journal_open import JournalHealth


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
    probe_timeout: float = 60.0  # seconds a new model's first run in a child may take
    probe_memory: int | None = None  # bytes it may map (None: from the model's size and shapes)
    probe: bool = True  # run new models in a child first (reconciler.ops.probe)
    access_log: bool = False
    grpc_listen: tuple[str, int] | None = ("127.0.0.1", 8001)  # None: no gRPC
    strict_readiness: bool = False  # ready only while every desired model serves
    header_timeout_s: float = 10.0  # a request's headers must be complete within this
    strict_journal: bool = False  # refuse an unreadable journal rather than move it aside
    mqtt: MqttSettings | None = None  # the broker to report to and take wakes from
    git: GitSourceConfig | None = None  # desired state pulled by the daemon (--git)
    git_interval_s: float | None = None  # None: resync_s
    device: DeviceIdentity | None = None  # id and labels, for status and reports
    download_rate_limit: int | None = None  # bytes/s for model downloads (None: no cap)


@dataclass(frozen=True)
class Daemon:
    controller: Controller
    server: Any  # uvicorn.Server
    notifier: Notifier
    grpc: Any = None  # runtime.serving.grpc.server.GrpcServer, or None when off
    fleet: FleetReporter | None = None  # the MQTT session, or None when no broker is set
    git: GitSource | None = None  # the built-in git source's thread (--git)


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
        opened = open_journal(options.state_dir / "journal.db", options.strict_journal)
        if opened is None:
            return EXIT_FAILURE
        journal, health = opened
        try:
            served = _recover_and_serve(options, journal, health)
        finally:
            journal.close()
    finally:
        lock.release()
    structlog.get_logger("hotswap").info("daemon.stopped")
    return EXIT_OK if served else EXIT_FAILURE


def open_journal(path: Path, strict: bool = False) -> tuple[Journal, JournalHealth] | None:
    """The journal and what its checks found (`reconciler.state.journal_open`); None (with the
    reason printed) when it cannot be read and `strict` (`--strict-journal`) refuses it."""
    from reconciler.state.journal_open import JournalRefused, open_checked

    opened = open_checked(path, strict=strict)
    if not isinstance(opened, JournalRefused):
        return opened
    if not opened.damaged:
        print(
            f"hotswap: the journal {path} cannot be opened ({opened.problem}); it was left as"
            " it is. Fix the cause (another process holding it, permissions, space) and start"
            " again.",
            file=sys.stderr,
        )
        return None
    # Refused, not replaced: the user asked for a human to look first.
    print(
        f"hotswap: the journal {path} cannot be read ({opened.problem}). With --strict-journal"
        f" the daemon does not run on a journal it cannot read. Keep it for inspection and"
        f" start a new one: mv {path} {path}.damaged (the daemon then serves what desired"
        " state asks for, fully verified again), or start without --strict-journal.",
        file=sys.stderr,
    )
    return None


def wire(options: DaemonOptions, journal: Journal, health: JournalHealth | None = None) -> Daemon:
    """Build the runtime, the controller and the HTTP server around an open journal."""

    from reconciler.loop.controller import Controller
    from reconciler.loop.sdnotify import Notifier
    from reconciler.ops.probe import ProbeSettings
    from reconciler.ops.progress import build_progress
    from reconciler.source.gitsync import desired_link
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
        progress=build_progress,  # the builder's phases, into status.json
    )
    metrics = Metrics()
    notifier = Notifier.from_env()
    metrics.set_build(hotswap_version())
    metrics.watch_state(repo.describe, journal.size_bytes)
    if health is not None:
        metrics.watch_journal(lambda: health.verdict, lambda: health.trusted)
    fleet: FleetReporter | None = None  # built below; the controller tells it of every status write
    controller = Controller(
        desired_link(options.state_dir / "git") if options.git else options.desired_dir,
        options.state_dir,
        journal,
        repo,
        resync_s=options.resync_s,
        threads=options.threads,
        memory_budget=options.memory_budget,
        metrics=metrics,
        trust_dir=options.trust_dir,
        strict_readiness=options.strict_readiness,
        probe=ProbeSettings(options.probe_timeout, options.probe_memory, options.probe),
        notifier=notifier,
        journal_health=health,
        on_status=lambda: fleet.changed() if fleet is not None else None,
        device=options.device,
        download_rate_limit=options.download_rate_limit,
    )
    git = _git_source(options, controller.wake)
    fleet = _fleet_reporter(options, controller, git)
    service = inference_service(
        repo,
        controller.ready,
        hotswap_version(),
        metrics=metrics,
        workers=options.workers,
        access_log=options.access_log,
    )
    config = _http_config(options, app_for(service))
    server = _server(config, notifier, controller)
    grpc = _grpc_server(service, options.grpc_listen)
    return Daemon(controller, server, notifier, grpc, fleet, git)


def _http_config(options: DaemonOptions, app: Any) -> Any:
    """uvicorn's settings: the guarded h11 protocol (a header deadline, bounded header size),
    no access log of its own (the daemon's is structured), no lifespan."""
    import uvicorn

    from runtime.serving.connections import MAX_HEADER_BYTES, guarded_h11

    return uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        http=guarded_h11(options.header_timeout_s),
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )


def _fleet_reporter(
    options: DaemonOptions, controller: Controller, git: GitSource | None
) -> FleetReporter | None:
    """The MQTT session when a broker is configured: reports from the status snapshot (and the
    journal head), and a wake makes the git source fetch now (or, on a desired dir, the
    controller look now). None, logged, when the MQTT settings cannot be used."""
    if options.mqtt is None:
        return None
    import structlog

    from reconciler.fleet.mqtt import FleetReporter, MqttConfigError
    from reconciler.state.journal_head import head_report
    from reconciler.state.status import read_snapshot

    def wake(commit: str | None) -> None:
        if git is not None:
            git.wake(commit)  # the fetched ref, never the message, decides what is served
        else:
            controller.wake()  # re-reads the desired checkout at once

    device = options.device
    try:
        return FleetReporter(
            options.mqtt,
            device.id if device else "",
            dict(device.labels) if device else {},
            hotswap_version(),
            snapshot=lambda: read_snapshot(options.state_dir),
            wake=wake,
            journal_head=lambda: head_report(options.state_dir / "journal.db"),
        )
    except MqttConfigError as e:
        # as with a broker that is down: the device serves and reconciles without its fleet
        structlog.get_logger("hotswap.fleet").error(
            "fleet.mqtt-config-invalid", broker=options.mqtt.broker, error=str(e),
            note="serving without MQTT until the config is fixed and the daemon restarted",
        )  # fmt: skip
        return None


def _git_source(options: DaemonOptions, on_published: Callable[[], None]) -> GitSource | None:
    """The git source's thread (not started until `serve`), or None with a desired dir given."""
    if options.git is None:
        return None
    from reconciler.loop.gitpoll import GitSource

    return GitSource(
        options.state_dir / "git",
        options.git,
        options.trust_dir or options.state_dir / "trust",
        on_published=on_published,
        interval_s=options.git_interval_s or options.resync_s,
    )


def _grpc_server(service: Any, listen: tuple[str, int] | None) -> Any:
    """The gRPC server over the same InferenceService as HTTP (not bound until `serve`)."""
    if listen is None:
        return None
    from runtime.serving.grpc.server import GrpcServer

    return GrpcServer(service, *listen)


def _server(config: Any, notifier: Notifier, controller: Controller) -> Any:
    """A uvicorn server that tells systemd READY=1 once it listens (restore is done by then)."""
    import uvicorn

    class NotifyingServer(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                controller.write_status()  # STATUS= as of now, before READY=1
                notifier.ready()

    return NotifyingServer(config)


def _recover_and_serve(options: DaemonOptions, journal: Journal, health: JournalHealth) -> bool:
    """Wire, restore, serve; True when the server started."""
    import structlog

    log = structlog.get_logger("hotswap")
    daemon = wire(options, journal, health)
    log.info(
        "daemon.starting",
        desired=str(daemon.controller.desired_dir),
        git=daemon.git.config.url if daemon.git else None,
        state_dir=str(options.state_dir),
        listen=f"{options.host}:{options.port}",
        grpc_listen=daemon.grpc.address if daemon.grpc else None,
        pid=os.getpid(),
    )
    report_journal(journal, health)
    # Untrusted: its records cannot say what was last promoted. Start from desired state
    # (every step verified again) rather than restore what the journal claims.
    daemon.controller.recover(restore=health.trusted)
    return serve(daemon)


def report_journal(journal: Journal, health: JournalHealth) -> None:
    """Log what the journal's checks found and journal it (its own record, typed)."""
    import structlog

    log = structlog.get_logger("hotswap")
    if health.record is None:
        return
    if health.trusted:
        log.warning(f"journal.{health.verdict}", problem=health.problem)
    elif health.verdict == "edited":  # the event name of earlier releases, kept for log readers
        log.error("journal.chain-broken", problem=health.problem)
    else:
        log.error(f"journal.{health.verdict}", problem=health.problem,
                  damaged_file=health.damaged_file)  # fmt: skip
    phase = getattr(health.record, "PHASE", Phase.FAILED)
    journal.append("-", Event.JOURNAL, phase, detail=health.record)


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
    if daemon.git is not None:
        daemon.git.start()
    daemon.controller.start()
    if daemon.fleet is not None:
        daemon.fleet.start()  # connects in the background: a broker that is down delays nothing
    try:
        server.run()
    finally:
        daemon.notifier.stopping()
        if daemon.grpc is not None:
            daemon.grpc.stop()  # after HTTP: new calls refused, those in flight drained
        if daemon.fleet is not None:
            daemon.fleet.stop()  # says `offline`: the device no longer serves
        if daemon.git is not None:
            daemon.git.stop()
        if not daemon.controller.stop():
            _exit_now(EXIT_OK if server.started else EXIT_FAILURE)
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


def _exit_now(code: int) -> None:
    """A step still runs after the stop's deadline (an engine build, an inference that does
    not end): exit without waiting for its thread, as a bounded SIGTERM promises, and without
    leaving a build process behind. Every journal record is committed as it is written, so
    nothing durable is lost."""
    import multiprocessing

    for child in multiprocessing.active_children():  # a TensorRT build: it would outlive us
        child.kill()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
