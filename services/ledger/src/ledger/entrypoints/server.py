"""``astra-ledger``: serve the ledger over gRPC, apply its migrations, or verify, export and
import its journal."""

from __future__ import annotations

from astra.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from chassis.service import Background, ServiceWiring

from ledger.bootstrap import ERROR_DOMAIN, Ledger, bootstrap, migrate
from ledger.config import LedgerSettings
from ledger.entrypoints.grpc_api import LedgerServicer
from ledger.entrypoints.journal_commands import COMMANDS
from ledger.entrypoints.workers import HoldExpiry, JournalCheckpoints

SERVICE = ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"]
SERVICE_NAME = SERVICE.full_name

LEDGER: ServiceWiring[LedgerSettings, Ledger] = ServiceWiring(
    name="ledger",
    module="ledger.entrypoints.server",
    description=__doc__ or "",
    settings=LedgerSettings,
    migrate=migrate,
    bootstrap=bootstrap,
    service=SERVICE,
    add_servicer=lambda ledger, server: ledger_pb2_grpc.add_LedgerServiceServicer_to_server(
        LedgerServicer(ledger), server
    ),
    error_domain=ERROR_DOMAIN,
    # Batches are the ledger's way past the per-call ceiling: only they take large bodies.
    batch_methods=("CreateTransfers", "LookupTransfers"),
    workers=lambda ledger, _settings: Background(
        before_server=[HoldExpiry(ledger), JournalCheckpoints(ledger)]
    ),
    commands=COMMANDS,
)

build_server = LEDGER.build_server
main = LEDGER.main

if __name__ == "__main__":
    main()
