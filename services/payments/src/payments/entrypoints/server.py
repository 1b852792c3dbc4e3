"""``astra-payments``: serve payments over gRPC, run its workers, or apply its migrations.

Commands:
  serve    (default) PaymentsService, plus the workers when PAYMENTS_WORKERS_ENABLED
  workers  only the workers: bank submissions and status resolution, the bank's
           event feed, ledger follow-ups, the KYC projection subscriber
  migrate  apply the database migrations
  erase-customer ID  erase a customer's personal data in payments (identity's
           CustomerErased does it when the KYC subscriber runs)
  rescreen-sanctions  screen the payments not yet given to the bank against
           PAYMENTS_SANCTIONS_LIST_FILE now (the workers do it at start)
  generate-kek  write a new key-encryption key file (PAYMENTS_KEY_ENCRYPTION_KEY_FILE)
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from astra.payments.v1 import payments_pb2, payments_pb2_grpc
from chassis.kek_command import generate_kek_command
from chassis.service import Command, ServiceWiring

from payments.adapters.fraud_model import FraudModelError
from payments.bootstrap import ERROR_DOMAIN, Payments, bootstrap, migrate
from payments.config import PaymentsSettings
from payments.entrypoints.grpc_api import PaymentsServicer
from payments.entrypoints.workers import background, rescreen_all
from payments.service_layer.use_cases import erase_customer_data

SERVICE = payments_pb2.DESCRIPTOR.services_by_name["PaymentsService"]


def erase_customer(args: argparse.Namespace, settings: PaymentsSettings) -> None:
    """Erase a customer's personal data in payments (what identity's CustomerErased does,
    for when the subscriber is off)."""
    app = bootstrap(settings)
    try:
        count = erase_customer_data(app.deps.uow, app.deps.clock, args.customer_id)
        print(json.dumps({"customer_id": args.customer_id, "payments_erased": count}), flush=True)
    finally:
        app.close()


def rescreen_sanctions(_args: argparse.Namespace, settings: PaymentsSettings) -> None:
    """Screen the open payments against the list file as it is now (a new version holds
    those it matches); the servers screen new payments with it once restarted."""
    app = bootstrap(settings)
    try:
        screener = app.deps.policy.sanctions
        if screener is None:
            raise SystemExit("PAYMENTS_SANCTIONS_LIST_FILE is empty: screening is off")
        changed = rescreen_all(app.deps)
        print(json.dumps({"list_version": screener.version, "payments_changed": changed}))
    finally:
        app.close()


def _erase_customer_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("customer_id", help='e.g. "cus_ada"')


def run_workers(_args: argparse.Namespace, settings: PaymentsSettings) -> None:
    """The workers without the server, whatever PAYMENTS_WORKERS_ENABLED says."""
    PAYMENTS.run(settings.model_copy(update={"workers_enabled": True}), serve_grpc=False)


PAYMENTS: ServiceWiring[PaymentsSettings, Payments] = ServiceWiring(
    name="payments",
    module="payments.entrypoints.server",
    description=__doc__ or "",
    settings=PaymentsSettings,
    migrate=migrate,
    bootstrap=bootstrap,
    service=SERVICE,
    add_servicer=lambda app, server: payments_pb2_grpc.add_PaymentsServiceServicer_to_server(
        PaymentsServicer(app), server
    ),
    error_domain=ERROR_DOMAIN,
    workers=background,
    commands=[
        Command("workers", "only the workers (no gRPC server)", run_workers, quiet=False),
        Command(
            "erase-customer",
            "erase a customer's personal data in payments",
            erase_customer,
            _erase_customer_arguments,
        ),
        Command(
            "rescreen-sanctions",
            "screen open payments against the sanctions list file now",
            rescreen_sanctions,
        ),
        generate_kek_command(),
    ],
    serving_log=lambda settings: {"bank": settings.bank_url, "workers": settings.workers_enabled},
)

build_server = PAYMENTS.build_server


def main(argv: Sequence[str] | None = None) -> None:
    """Run a command; an artifact of the fraud model that cannot be trusted stops the start
    with one line saying why (exit status 1), not a traceback."""
    try:
        PAYMENTS.main(argv)
    except FraudModelError as error:
        raise SystemExit(f"astra-payments: not started: {error}") from None


if __name__ == "__main__":
    main()
