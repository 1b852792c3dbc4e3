"""The ledger's unit of work on SQLAlchemy Core: the set-based store on one connection."""

from __future__ import annotations

from chassis.db.uow import CoreUnitOfWork
from sqlalchemy import Connection

from ledger.adapters.store import LedgerStore
from ledger.service_layer.unit_of_work import LedgerUnitOfWork


class SqlLedgerUnitOfWork(CoreUnitOfWork, LedgerUnitOfWork):
    # Core only: the ledger maps nothing with the ORM (see ledger.adapters.tables).
    def _open_repositories(self, connection: Connection) -> None:
        self.store = LedgerStore(connection)
