"""Wires the ledger's adapters into its service layer: the only place that does."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from chassis.db.engine import create_db_engine, is_postgres
from chassis.db.migrations import upgrade
from chassis.events.writer import OutboxWriter
from chassis.kernel.clock import Clock, SystemClock
from sqlalchemy import Engine, text

from ledger.adapters import tables
from ledger.adapters.events import to_outbox_message
from ledger.adapters.unit_of_work import SqlLedgerUnitOfWork
from ledger.config import LedgerSettings
from ledger.domain.model import TransferRequest
from ledger.service_layer import use_cases
from ledger.service_layer.batcher import TransferBatcher
from ledger.service_layer.ports import ItemOutcome
from ledger.service_layer.unit_of_work import LedgerUnitOfWork

_log = structlog.get_logger("ledger")

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
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start_expiry_worker(self) -> None:
        thread = threading.Thread(target=self._expire_loop, name="hold-expiry", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _expire_loop(self) -> None:
        interval = self.settings.expiry_interval_seconds
        lock_key = 0x1ED6E5  # one expirer at a time across processes
        while not self._stop.wait(interval):
            try:
                if is_postgres(self.engine):
                    with self.engine.connect() as connection:
                        got = connection.execute(
                            text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key}
                        ).scalar()
                        if not got:
                            continue
                        try:
                            self._expire_all()
                        finally:
                            connection.execute(
                                text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key}
                            )
                            connection.commit()
                else:
                    self._expire_all()
            except Exception:
                _log.exception("hold expiry failed; will try again")

    def _expire_all(self) -> None:
        while not self._stop.is_set():
            expired = use_cases.expire_due_holds(self.uow, self.clock)
            if expired:
                _log.info("holds expired", count=expired)
            else:
                return

    def close(self) -> None:
        self._stop.set()
        self.batcher.close()
        for thread in self._threads:
            thread.join(timeout=10)
        self.engine.dispose()


def bootstrap(settings: LedgerSettings, clock: Clock | None = None) -> Ledger:
    if settings.migrate_on_start:
        migrate(settings.database_url)
    engine = create_db_engine(
        settings.database_url, pool_size=settings.db_pool_size, application_name="astra-ledger"
    )
    clock = clock or SystemClock()
    write_events = OutboxWriter(tables.outbox, CONTEXT).events_writer(to_outbox_message)

    def uow() -> LedgerUnitOfWork:
        return SqlLedgerUnitOfWork(engine, write_events)

    def execute(requests: Sequence[TransferRequest]) -> list[ItemOutcome]:
        return use_cases.execute_batch(uow, clock, requests)

    batcher = TransferBatcher(
        execute,
        max_batch=settings.batcher_max_batch,
        workers=settings.batcher_workers,
        name="transfer-batcher",
    )
    return Ledger(engine=engine, clock=clock, batcher=batcher, settings=settings, uow=uow)
