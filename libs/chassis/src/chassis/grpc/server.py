"""One gRPC server for every service (``chassis.service`` runs it).

Health (grpc.health.v1, per service and overall ""), server reflection for
grpcurl, the shared interceptors, mutual TLS from reloaded files (``chassis.tls``)
and a graceful drain: health turns
NOT_SERVING so load balancers stop sending, in-flight calls get ``grace``
seconds to finish, then the ``on_stop`` hooks run.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from chassis.config import ServiceSettings
from chassis.grpc.telemetry import server_interceptors
from chassis.tls import TlsFiles, secure_channel, server_credentials

_log = structlog.get_logger("chassis.server")


@dataclass(frozen=True)
class ServiceBinding:
    """A servicer to mount: its full proto name and the generated ``add_..._to_server``."""

    full_name: str
    register: Callable[[grpc.Server], None]


@dataclass
class ServerOptions:
    # Mutual TLS, always: there is no plaintext port.
    tls: TlsFiles = field(kw_only=True)
    host: str = "127.0.0.1"
    port: int = 0
    max_workers: int = 32
    reuse_port: bool = False
    grace_seconds: float = 10.0
    # The largest request the server takes: the largest a method takes (CallInterceptor's
    # RequestLimits hold each method to its own).
    max_message_bytes: int = 64 * 1024 * 1024
    # The largest response (a page of a list may be large; requests are what callers send).
    max_send_message_bytes: int = 64 * 1024 * 1024
    # Calls served or queued at once; gRPC answers RESOURCE_EXHAUSTED beyond (None: no cap).
    max_concurrent_rpcs: int | None = None
    extra_options: list[tuple[str, int | str]] = field(default_factory=list)

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> ServerOptions:
        """The options every service reads from its ``<SERVICE>_GRPC_*`` settings."""
        return cls(
            host=settings.grpc_host,
            port=settings.grpc_port,
            max_workers=settings.grpc_max_workers,
            reuse_port=settings.grpc_reuse_port,
            grace_seconds=settings.grace_seconds,
            max_message_bytes=max(
                settings.grpc_max_message_bytes, settings.grpc_max_batch_message_bytes
            ),
            max_concurrent_rpcs=settings.grpc_max_concurrent_rpcs,
            tls=settings.tls,
        )


def is_serving(
    target: str,
    tls: TlsFiles,
    *,
    server_name: str | None = None,
    service: str = "",
    timeout: float = 2.0,
) -> bool:
    """Whether the server at ``target`` answers SERVING to a health check over mutual TLS."""
    with secure_channel(target, tls, server_name=server_name) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def local_address(host: str, port: int) -> str:
    """Where a process reaches a server of its own host bound to ``host``."""
    return f"{'127.0.0.1' if host in ('', '0.0.0.0', '::') else host}:{port}"  # noqa: S104


class GrpcServer:
    def __init__(
        self,
        services: Sequence[ServiceBinding],
        options: ServerOptions,
        interceptors: Sequence[grpc.ServerInterceptor[Any, Any]] = (),
        draining: threading.Event | None = None,
    ) -> None:
        self._services = list(services)
        self._options = options
        self._stopped = threading.Event()
        # Set when the drain starts: streaming calls (which see it in their CallContext,
        # through CallInterceptor) end then instead of holding the drain for its grace.
        self.draining = draining or threading.Event()
        self._on_stop: list[Callable[[], None]] = []
        self._executor = futures.ThreadPoolExecutor(
            max_workers=options.max_workers, thread_name_prefix="grpc"
        )
        self.server = grpc.server(
            self._executor,
            # Outermost first: the trace span and the metrics cover the whole call,
            # and the service's own interceptors log inside the span (trace ids).
            interceptors=[*server_interceptors(), *interceptors],
            options=[
                # gRPC sets SO_REUSEPORT by default on Linux; only ask for it on purpose,
                # so that a second process cannot silently share a port by accident.
                ("grpc.so_reuseport", 1 if options.reuse_port else 0),
                ("grpc.max_receive_message_length", options.max_message_bytes),
                ("grpc.max_send_message_length", options.max_send_message_bytes),
                *options.extra_options,
            ],
            maximum_concurrent_rpcs=options.max_concurrent_rpcs,
        )
        self.health = health.HealthServicer(
            experimental_non_blocking=True,
            experimental_thread_pool=futures.ThreadPoolExecutor(max_workers=2),
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        for service in self._services:
            service.register(self.server)
        reflection.enable_server_reflection(
            [
                *(s.full_name for s in self._services),
                health.SERVICE_NAME,
                reflection.SERVICE_NAME,
            ],
            self.server,
        )
        self.port = 0

    def on_stop(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` after the server drained (stop workers, close pools)."""
        self._on_stop.append(hook)

    def start(self) -> int:
        address = f"{self._options.host}:{self._options.port}"
        self.port = self.server.add_secure_port(address, server_credentials(self._options.tls))
        if self.port == 0:
            raise RuntimeError(f"cannot bind gRPC server to {address}")
        self.server.start()
        self._set_all(health_pb2.HealthCheckResponse.SERVING)
        _log.info("grpc server started", address=f"{self._options.host}:{self.port}")
        return self.port

    def _set_all(self, status: int) -> None:
        self.health.set("", status)
        for service in self._services:
            self.health.set(service.full_name, status)

    def stop(self, grace: float | None = None) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self._options.grace_seconds if grace is None else grace
        _log.info("grpc server draining", grace_seconds=grace)
        self.health.enter_graceful_shutdown()
        self.draining.set()
        self.server.stop(grace).wait()
        for hook in reversed(self._on_stop):
            try:
                hook()
            except Exception:
                _log.exception("stop hook failed")
        self._executor.shutdown(wait=False)
        _log.info("grpc server stopped")

    def serve_forever(self) -> None:
        """Start, then block until SIGTERM or SIGINT, then drain and stop.

        For a bare server (the benchmarks'); a service runs with its workers
        through ``chassis.service``.
        """
        stop_requested = threading.Event()

        def request_stop(signum: int, _frame: object) -> None:
            _log.info("signal received", signal=signal.Signals(signum).name)
            stop_requested.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        if self.port == 0:
            self.start()
        stop_requested.wait()
        self.stop()
