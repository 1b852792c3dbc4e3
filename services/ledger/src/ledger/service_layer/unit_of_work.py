"""The ledger's unit of work: a transaction, its store, and its events bound for the outbox."""

from __future__ import annotations

from chassis.db.uow import EventMapper, UnitOfWork
from chassis.outbox.writer import OutboxWriter
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ledger.adapters.store import LedgerStore


class LedgerUnitOfWork(UnitOfWork):
    store: LedgerStore

    def __init__(
        self, engine: Engine, outbox: OutboxWriter | None, event_mapper: EventMapper | None
    ) -> None:
        super().__init__(engine, outbox, event_mapper)

    def _open_repositories(self, session: Session) -> None:
        self.store = LedgerStore(session.connection())
