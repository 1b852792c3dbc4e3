"""One ``main`` for every service: each passes its wiring, the chassis does the rest.

``ServiceWiring`` names what is the service's own: its settings, how to
migrate and bootstrap it, its gRPC servicer and error domain, its background
workers and any commands of its own. ``ServiceWiring.main`` is the console
script:

- ``serve`` (the default): logging, tracing, metrics, then the service:
  bootstrapped, its workers started, the gRPC server up (health, reflection,
  tracing and metrics, ``CallInterceptor`` with the service's error domain,
  ``AuthInterceptor`` with the service's verifier), the garbage collector tuned;
  with ``<SERVICE>_PROCESSES`` > 1, a supervisor of that many copies instead
  (``chassis.multiprocess``);
- ``migrate``: apply the database migrations;
- ``health``: ask the running service for its health over mutual TLS, with its
  own certificate (exit 0 when SERVING, else 1; an exec probe);
- the service's own commands (``Command``).

On SIGTERM or SIGINT a service drains along one path, in reverse order of
start: the workers started after the server, the server (health turns
NOT_SERVING, calls in flight get what is left of ``<SERVICE>_GRACE_SECONDS``),
the workers started before it, the app's own resources, the metrics
endpoint. Stopping is bounded: what is left of the grace period, and at least
``STOP_ALLOWANCE`` seconds for the workers and the app once the server has
drained; a worker that takes longer is logged and left behind (its threads
are daemons) rather than waited for.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import grpc
import structlog
from google.protobuf.descriptor import ServiceDescriptor
from sqlalchemy.engine import make_url

from chassis.auth import AccessPolicy, AuthInterceptor, TokenVerifier, verifier_from
from chassis.background import Worker, Workers, seconds_left, stop_within
from chassis.config import ServiceSettings, TokenVerifyingSettings
from chassis.db.retry import DATABASE_UNAVAILABLE
from chassis.grpc.interceptors import CallInterceptor, RequestLimits
from chassis.grpc.server import (
    GrpcServer,
    ServerOptions,
    ServiceBinding,
    is_serving,
    local_address,
)
from chassis.logging import configure_logging
from chassis.metrics import MetricsServer
from chassis.multiprocess import supervise
from chassis.runtime import tune_gc
from chassis.tracing import configure_tracing

# Time the workers and the app get to stop once the server has drained, even
# when the calls in flight took the whole grace period; the last part of it is
# the app's, to close what it opened (pools, channels).
STOP_ALLOWANCE = 2.0
CLOSING_TIME = 0.5


class App(Protocol):
    """A bootstrapped service: what its wiring built, closed last on the way out."""

    def close(self) -> None: ...


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
AppT = TypeVar("AppT", bound=App)


@dataclass(frozen=True)
class Background:
    """A service's workers, each list in start order: those started before the server takes
    calls (stopped after it has drained), and those started once it does (stopped first)."""

    before_server: Sequence[Worker] = ()
    after_server: Sequence[Worker] = ()


@dataclass(frozen=True)
class Command(Generic[SettingsT]):
    """A command of the service's own, beside ``serve`` and ``migrate``.

    ``quiet``: an operator's command whose output is what it prints; it logs
    warnings only and is not traced. Otherwise the command logs at the
    service's level and is traced like ``serve``.
    """

    name: str
    help: str
    run: Callable[[argparse.Namespace, SettingsT], None]
    arguments: Callable[[argparse.ArgumentParser], None] = lambda _parser: None
    quiet: bool = True


def _no_workers(_app: Any, _settings: Any) -> Background:
    return Background()


def _no_context(_settings: Any) -> Mapping[str, object]:
    return {}


@dataclass(frozen=True)
class ServiceWiring(Generic[SettingsT, AppT]):
    """What makes a service itself; the chassis runs it."""

    name: str  # "ledger": the logs' service, the program astra-<name>
    module: str  # where main is: the supervisor's copies run ``python -m <module> serve``
    description: str  # --help
    settings: Callable[[], SettingsT]
    migrate: Callable[[str], None]  # database URL -> migrated
    bootstrap: Callable[[SettingsT], AppT]
    service: ServiceDescriptor  # the proto service: its name, its methods' scopes
    add_servicer: Callable[[AppT, grpc.Server], None]
    error_domain: str  # google.rpc.ErrorInfo.domain of the service's errors
    workers: Callable[[AppT, SettingsT], Background] = _no_workers
    # How the service checks tokens; default: identity's keys, as its settings say.
    verifier: Callable[[AppT, SettingsT], TokenVerifier] | None = None
    commands: Sequence[Command[SettingsT]] = ()
    # Methods (names in ``service``) whose requests are batches: they alone take request
    # bodies up to ``<SERVICE>_GRPC_MAX_BATCH_MESSAGE_BYTES``.
    batch_methods: Sequence[str] = ()
    # Fields of the "serving" log line beyond the port and the database.
    serving_log: Callable[[SettingsT], Mapping[str, object]] = _no_context
    _log: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_log", structlog.get_logger(self.name))

    # --- the gRPC server ---------------------------------------------------------------

    def build_server(
        self, app: AppT, settings: SettingsT, verifier: TokenVerifier | None = None
    ) -> GrpcServer:
        """The service's gRPC server around a bootstrapped app; stopping it closes the app.

        For tests and tools that serve an app they bootstrapped; ``verifier``
        replaces the one the wiring builds.
        """
        server = self._server(app, settings, verifier)
        server.on_stop(app.close)
        return server

    def _server(
        self, app: AppT, settings: SettingsT, verifier: TokenVerifier | None = None
    ) -> GrpcServer:
        limits = RequestLimits(
            default_bytes=settings.grpc_max_message_bytes,
            batch_bytes=settings.grpc_max_batch_message_bytes,
            batch_methods=frozenset(
                f"/{self.service.full_name}/{name}" for name in self.batch_methods
            ),
        )
        verifier = verifier or self._verifier(app, settings)
        draining = threading.Event()
        interceptors: list[grpc.ServerInterceptor[Any, Any]] = [
            CallInterceptor(
                self.error_domain,
                transient_errors=DATABASE_UNAVAILABLE,
                request_limits=limits,
                draining=draining,
            ),
            # Inside CallInterceptor: refusals are mapped and logged like any domain error.
            AuthInterceptor(verifier, AccessPolicy.for_services(self.service)),
        ]
        server = GrpcServer(
            [ServiceBinding(self.service.full_name, lambda s: self.add_servicer(app, s))],
            dataclasses.replace(
                ServerOptions.from_settings(settings), max_message_bytes=limits.largest
            ),
            interceptors=interceptors,
            draining=draining,
        )
        server.on_stop(verifier.close)
        return server

    def _verifier(self, app: AppT, settings: SettingsT) -> TokenVerifier:
        # Every service checks tokens: there is no setting that turns it off.
        if self.verifier is not None:
            return self.verifier(app, settings)
        if not isinstance(settings, TokenVerifyingSettings):
            raise TypeError(
                f"{self.name}: settings without the auth fields need a verifier in the wiring"
            )
        return verifier_from(settings)

    # --- the console script ---------------------------------------------------------------

    def main(self, argv: Sequence[str] | None = None) -> None:
        parser = argparse.ArgumentParser(
            prog=f"astra-{self.name}",
            description=self.description,
            formatter_class=argparse.RawTextHelpFormatter,
        )
        commands = parser.add_subparsers(dest="command")
        commands.add_parser("serve", help=f"serve {self.service.name} (the default)")
        commands.add_parser("migrate", help="apply the database migrations")
        commands.add_parser(
            "health", help="check the running service's health over mutual TLS (exit 0: SERVING)"
        )
        own = {command.name: command for command in self.commands}
        for command in self.commands:
            command.arguments(commands.add_parser(command.name, help=command.help))
        args = parser.parse_args(argv)
        chosen = own.get(args.command)
        settings = self.settings()
        quiet = (chosen is not None and chosen.quiet) or args.command == "health"
        configure_logging(self.name, "WARNING" if quiet else settings.log_level)
        if args.command == "health":
            target = local_address(settings.grpc_host, settings.grpc_port)
            # The server must name this service: its own certificate does.
            raise SystemExit(0 if is_serving(target, settings.tls, server_name=self.name) else 1)
        if args.command == "migrate":
            self.migrate(settings.database_url)
            self._log.info("migrations applied")
            return
        if not quiet:
            configure_tracing(self.name)
        if chosen is not None:
            chosen.run(args, settings)
            return
        if settings.processes > 1:
            if settings.migrate_on_start:
                self.migrate(settings.database_url)
            raise SystemExit(supervise(settings, self.module))
        self.run(settings)

    def run(self, settings: SettingsT, *, serve_grpc: bool = True) -> None:
        """Run the service in this process until SIGTERM or SIGINT, then drain.

        ``serve_grpc=False`` runs the workers alone (and the metrics endpoint).
        """
        stop_requested = threading.Event()

        def request_stop(signum: int, _frame: object) -> None:
            self._log.info("signal received", signal=signal.Signals(signum).name)
            stop_requested.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        metrics = MetricsServer(settings.grpc_host, settings.metrics_port)
        if settings.metrics_port:
            metrics.start()
        try:
            self._serve(self.bootstrap(settings), settings, serve_grpc, stop_requested)
        finally:
            metrics.stop()
            self._log.info("stopped")

    def _serve(
        self, app: AppT, settings: SettingsT, serve_grpc: bool, stop_requested: threading.Event
    ) -> None:
        before, after, server = Workers(), Workers(), None
        try:
            background = self.workers(app, settings)
            before, after = Workers(background.before_server), Workers(background.after_server)
            server = self._server(app, settings) if serve_grpc else None
            before.start()
            tune_gc()
            port = server.start() if server is not None else None
            after.start()
            self._log.info(
                f"{self.name} serving" if server is not None else f"{self.name} workers running",
                **({"port": port} if port is not None else {}),
                database=make_url(settings.database_url).render_as_string(hide_password=True),
                **self.serving_log(settings),
            )
            stop_requested.wait()
        finally:
            # Also the way out of a start that failed half-way: what started, stops.
            deadline = time.monotonic() + settings.grace_seconds
            self._log.info("draining", grace_seconds=settings.grace_seconds)
            after.stop(deadline)
            if server is not None:
                server.stop(seconds_left(deadline))
            finish_by = max(deadline, time.monotonic() + STOP_ALLOWANCE)
            before.stop(finish_by - CLOSING_TIME)
            if stop_within(f"{self.name}-app", lambda _left: app.close(), finish_by) == "late":
                self._log.warning("closing did not finish in time")
