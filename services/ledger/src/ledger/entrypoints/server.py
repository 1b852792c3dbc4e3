"""``astra-ledger``: serve the ledger over gRPC, or apply its migrations."""

from __future__ import annotations

import argparse

import structlog
from astra.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from chassis.auth import AccessPolicy, AuthInterceptor, TokenVerifier, build_verifier
from chassis.db.retry import DATABASE_UNAVAILABLE, is_database_unavailable
from chassis.grpc.interceptors import CallInterceptor
from chassis.grpc.server import GrpcServer, ServerOptions, ServiceBinding
from chassis.logging import configure_logging
from chassis.metrics import serve_metrics
from chassis.multiprocess import supervise
from chassis.runtime import tune_gc
from chassis.tracing import configure_tracing

from ledger.bootstrap import ERROR_DOMAIN, Ledger, bootstrap, migrate
from ledger.config import LedgerSettings
from ledger.entrypoints.grpc_api import LedgerServicer

SERVICE = ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"]
SERVICE_NAME = SERVICE.full_name


def auth_verifier(settings: LedgerSettings) -> TokenVerifier:
    """Verifies tokens with identity's public keys (or a JWKS file), fetched when first needed."""
    return build_verifier(
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        identity_target=settings.identity_target,
        jwks_file=settings.auth_jwks_file,
        leeway_seconds=settings.auth_leeway_seconds,
    )


def build_server(
    ledger: Ledger, settings: LedgerSettings, verifier: TokenVerifier | None = None
) -> GrpcServer:
    servicer = LedgerServicer(ledger)
    verifier = verifier or auth_verifier(settings)
    server = GrpcServer(
        [
            ServiceBinding(
                SERVICE_NAME,
                lambda s: ledger_pb2_grpc.add_LedgerServiceServicer_to_server(servicer, s),
            )
        ],
        ServerOptions.from_settings(settings),
        interceptors=[
            CallInterceptor(ERROR_DOMAIN, transient_errors=DATABASE_UNAVAILABLE),
            # Inside CallInterceptor: refusals are mapped and logged like any domain error.
            AuthInterceptor(verifier, AccessPolicy.for_services(SERVICE)),
        ],
    )
    server.on_stop(ledger.close)
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="astra-ledger", description=__doc__)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    args = parser.parse_args(argv)
    settings = LedgerSettings()
    configure_logging("ledger", settings.log_level)
    configure_tracing("ledger")
    log = structlog.get_logger("ledger")
    if args.command == "migrate":
        migrate(settings.database_url)
        log.info("migrations applied")
        return
    if settings.processes > 1:
        if settings.migrate_on_start:
            migrate(settings.database_url)
        raise SystemExit(supervise(settings, "ledger.entrypoints.server"))
    ledger = bootstrap(settings)
    ledger.start_expiry_worker()
    server = build_server(ledger, settings)
    serve_metrics(server, settings.grpc_host, settings.metrics_port)
    tune_gc()
    port = server.start()
    log.info("ledger serving", port=port, database=_safe_url(settings.database_url))
    server.serve_forever()


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


__all__ = ["is_database_unavailable", "main"]

if __name__ == "__main__":
    main()
