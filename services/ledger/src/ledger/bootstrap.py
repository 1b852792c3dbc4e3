"""Wires the ledger's adapters into its service layer: the only place that does."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from chassis.db.engine import create_db_engine
from chassis.db.migrations import upgrade
from chassis.events.writer import OutboxWriter
from chassis.kernel.clock import Clock, SystemClock
from sqlalchemy import Engine

from ledger.adapters import tables
from ledger.adapters.events import to_outbox_message
from ledger.adapters.unit_of_work import SqlLedgerUnitOfWork
from ledger.config import LedgerSettings
from ledger.domain.model import TransferRequest
from ledger.service_layer import use_cases
from ledger.service_layer.batcher import TransferBatcher
from ledger.service_layer.ports import ItemOutcome
from ledger.service_layer.unit_of_work import LedgerUnitOfWork

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
CONTEXT = "ledger"
ERROR_DOMAIN = "ledger.astra"


def migrate(database_url: str) -> None:
    upgrade(database_url, MIGRATIONS)


@dataclass
class Ledger:
    """The running ledger's parts, as the entrypoints use them."""

    engine: Engine
    clock: Clock
    batcher: TransferBatcher
    settings: LedgerSettings
    uow: Callable[[], LedgerUnitOfWork]

    def close(self) -> None:
        self.batcher.close()
        self.engine.dispose()


def unit_of_work(engine: Engine) -> Callable[[], LedgerUnitOfWork]:
    """The ledger's units of work on ``engine``, writing their events to its outbox."""
    write_events = OutboxWriter(tables.outbox, CONTEXT).events_writer(to_outbox_message)

    def uow() -> LedgerUnitOfWork:
        return SqlLedgerUnitOfWork(engine, write_events)

    return uow


def bootstrap(settings: LedgerSettings, clock: Clock | None = None) -> Ledger:
    if settings.migrate_on_start:
        migrate(settings.database_url)
    engine = create_db_engine(
        settings.database_url, pool_size=settings.db_pool_size, application_name="astra-ledger"
    )
    clock = clock or SystemClock()
    uow = unit_of_work(engine)

    def execute(requests: Sequence[TransferRequest]) -> list[ItemOutcome]:
        return use_cases.execute_batch(uow, clock, requests)

    batcher = TransferBatcher(
        execute,
        max_batch=settings.batcher_max_batch,
        workers=settings.batcher_workers,
        name="transfer-batcher",
    )
    return Ledger(engine=engine, clock=clock, batcher=batcher, settings=settings, uow=uow)
