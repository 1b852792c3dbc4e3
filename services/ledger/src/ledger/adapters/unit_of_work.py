"""The ledger's unit of work on SQLAlchemy Core: the set-based repository on one connection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chassis.db.uow import CoreUnitOfWork
from sqlalchemy import Connection

from ledger.adapters.journal import SqlJournal
from ledger.adapters.repository import SqlLedgerRepository
from ledger.service_layer.unit_of_work import LedgerUnitOfWork


class SqlLedgerUnitOfWork(CoreUnitOfWork, LedgerUnitOfWork):
    # Core only: the ledger maps nothing with the ORM (see ledger.adapters.tables).
    def _open_repositories(self, connection: Connection) -> None:
        self.ledger = self._repository = SqlLedgerRepository(connection)
        self.journal = SqlJournal(connection)

    def _commit(self, events: Sequence[Any]) -> None:
        self._write_events(events)
        # Last before the commit: the journal's head stays locked only for its append.
        self._repository.append_journal()
        self.connection.commit()
