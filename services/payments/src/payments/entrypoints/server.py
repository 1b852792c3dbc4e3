"""``astra-payments``: serve payments over gRPC, run its workers, or apply its migrations.

Commands:
  serve    (default) PaymentsService, plus the workers when PAYMENTS_WORKERS_ENABLED
  workers  only the workers: bank submissions and status resolution, the bank's
           event feed, ledger follow-ups, the KYC projection subscriber
  migrate  apply the database migrations
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

import structlog
from astra.payments.v1 import payments_pb2, payments_pb2_grpc
from chassis.db.retry import DATABASE_UNAVAILABLE
from chassis.grpc.interceptors import CallInterceptor
from chassis.grpc.server import GrpcServer, ServerOptions, ServiceBinding
from chassis.logging import configure_logging
from chassis.metrics import serve_metrics, serving_metrics
from chassis.multiprocess import is_first_process, supervise
from chassis.runtime import tune_gc
from chassis.tracing import configure_tracing
from sqlalchemy.engine import make_url

from payments.bootstrap import ERROR_DOMAIN, Payments, bootstrap, migrate
from payments.config import PaymentsSettings
from payments.entrypoints.grpc_api import PaymentsServicer
from payments.entrypoints.kyc_subscriber import start_kyc_subscriber

SERVICE = payments_pb2.DESCRIPTOR.services_by_name["PaymentsService"]


def build_server(app: Payments, settings: PaymentsSettings) -> GrpcServer:
    servicer = PaymentsServicer(app)
    # GrpcServer puts the tracing and metrics interceptors in front of these itself.
    interceptors: list[Any] = [
        CallInterceptor(ERROR_DOMAIN, transient_errors=DATABASE_UNAVAILABLE),
    ]
    if settings.auth_enabled:
        from chassis.auth import AccessPolicy, AuthInterceptor
        from chassis.auth.setup import build_verifier

        verifier = build_verifier(
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
            identity_target=settings.identity_target,
            jwks_file=settings.auth_jwks_file,
        )
        interceptors.append(AuthInterceptor(verifier, AccessPolicy.for_services(SERVICE)))
    server = GrpcServer(
        [
            ServiceBinding(
                SERVICE.full_name,
                lambda s: payments_pb2_grpc.add_PaymentsServiceServicer_to_server(servicer, s),
            )
        ],
        ServerOptions.from_settings(settings),
        interceptors=interceptors,
    )
    server.on_stop(app.close)
    return server


def _run_workers(app: Payments, settings: PaymentsSettings) -> None:
    app.start_workers()
    subscriber = start_kyc_subscriber(app, settings)
    if subscriber is not None:
        app._closers.append(subscriber.stop)


def _wait_for_signal() -> None:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_args: stop.set())
    stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="astra-payments", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "command", nargs="?", default="serve", choices=["serve", "workers", "migrate"]
    )
    args = parser.parse_args(argv)
    settings = PaymentsSettings()
    configure_logging("payments", settings.log_level)
    configure_tracing("payments")
    log = structlog.get_logger("payments")
    if args.command == "migrate":
        migrate(settings.database_url)
        log.info("migrations applied")
        return
    if args.command == "serve" and settings.processes > 1:
        if settings.migrate_on_start:
            migrate(settings.database_url)
        raise SystemExit(supervise(settings, "payments.entrypoints.server"))
    app = bootstrap(settings)
    if is_first_process():
        app.start_sampler()
    app.start_capacity_watch()
    database = make_url(settings.database_url).render_as_string(hide_password=True)
    if args.command == "workers":
        _run_workers(app, settings)
        log.info("payments workers running", database=database, bank=settings.bank_url)
        with serving_metrics(settings.grpc_host, settings.metrics_port):
            _wait_for_signal()
        app.close()
        return
    server = build_server(app, settings)
    serve_metrics(server, settings.grpc_host, settings.metrics_port)
    if settings.workers_enabled:
        _run_workers(app, settings)
    tune_gc()
    port = server.start()
    log.info(
        "payments serving",
        port=port,
        database=database,
        bank=settings.bank_url,
        workers=settings.workers_enabled,
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
