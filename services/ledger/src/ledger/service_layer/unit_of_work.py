"""The ledger's unit of work: a transaction, its store, and its events bound for the outbox."""

from __future__ import annotations

from chassis.db.uow import EventMapper, UnitOfWork
from chassis.events.writer import OutboxWriter
from sqlalchemy import Connection, Engine

from ledger.adapters.store import LedgerStore


class LedgerUnitOfWork(UnitOfWork):
    # Core only: the ledger maps nothing with the ORM (see ledger.adapters.tables).
    orm = False
    store: LedgerStore

    def __init__(
        self, engine: Engine, outbox: OutboxWriter | None, event_mapper: EventMapper | None
    ) -> None:
        super().__init__(engine, outbox, event_mapper)

    def _open_core_repositories(self, connection: Connection) -> None:
        self.store = LedgerStore(connection)
