"""``astra-relay``: publish one context's outbox to its Pub/Sub topic (``run``), print its lag
(``lag``), or ask a running relay's health port over mutual TLS (``health``: exit 0 when
SERVING, for an exec probe).

Configured by ``RELAY_*`` (``chassis.events.relay_settings``) and ``ASTRA_PUBSUB_*``;
run one per context, or several for availability (they share the lanes).
SIGTERM or SIGINT finishes the round in flight, releases the lanes and exits.
"""

from __future__ import annotations

import argparse
import json
import signal
from concurrent import futures

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from chassis.config import PubSubSettings
from chassis.events.outbox_store import describe
from chassis.events.relay import Relay
from chassis.events.relay_settings import RelaySettings
from chassis.grpc.server import is_serving, local_address
from chassis.logging import configure_logging
from chassis.metrics import (
    MetricsServer,
    OutboxBacklog,
    declare_outbox_series,
    record_outbox_backlog,
)
from chassis.tls import server_credentials


def _health_server(settings: RelaySettings) -> tuple[grpc.Server, health.HealthServicer]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    address = f"{settings.health_host}:{settings.health_port}"
    if server.add_secure_port(address, server_credentials(settings.tls)) == 0:
        raise RuntimeError(f"cannot bind the relay's health port {address}")
    server.start()
    return server, servicer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="astra-relay", description=__doc__)
    parser.add_argument("command", nargs="?", default="run", choices=["run", "lag", "health"])
    args = parser.parse_args(argv)
    settings = RelaySettings()
    if args.command == "health":
        target = local_address(settings.health_host, settings.health_port)
        # With the relay's own certificate; the server must name the relay.
        serving = settings.health_port and is_serving(target, settings.tls, server_name="relay")
        raise SystemExit(0 if serving else 1)
    pubsub = PubSubSettings()
    configure_logging(f"relay-{settings.context}", settings.log_level)
    log = structlog.get_logger("chassis.relay")
    relay = Relay.build(
        settings,
        project=pubsub.project,
        create_topic=pubsub.create_topics,
        on_lag=lambda lag: record_outbox_backlog(
            settings.context, OutboxBacklog(lag.backlog, lag.oldest_age_seconds)
        ),
    )
    if args.command == "lag":
        print(json.dumps(describe(relay.measure_lag())))
        return

    def request_stop(signum: int, _frame: object) -> None:
        log.info("signal received", signal=signal.Signals(signum).name)
        relay.stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    server = None
    if settings.health_port:
        server, servicer = _health_server(settings)
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        log.info("relay health serving", port=settings.health_port)
    metrics = MetricsServer(settings.health_host, settings.metrics_port)
    if settings.metrics_port:
        declare_outbox_series(settings.context)
        metrics.start()
    try:
        relay.run()
    finally:
        metrics.stop()
        if server is not None:
            servicer.enter_graceful_shutdown()
            server.stop(1).wait()


if __name__ == "__main__":
    main()
