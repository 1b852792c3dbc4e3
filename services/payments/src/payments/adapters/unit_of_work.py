"""Payments' units of work on SQLAlchemy Core: the repository on one connection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chassis.db.uow import CoreUnitOfWork
from sqlalchemy import Connection

from payments.adapters.repository import PaymentsRepository
from payments.service_layer.unit_of_work import PaymentsUnitOfWork


class SqlPaymentsUnitOfWork(CoreUnitOfWork, PaymentsUnitOfWork):
    # Core only: payments' repository writes rows with Core statements.
    def _open_repositories(self, connection: Connection) -> None:
        self.payments = PaymentsRepository(connection)


class JoinedPaymentsUnitOfWork(PaymentsUnitOfWork):
    """Payments' repository on a transaction someone else owns: an event handler's, which
    records the event in the inbox in the same transaction.

    Its commit makes nothing durable and its rollback undoes nothing: the owner
    commits or rolls back the whole, and runs it again after a lost race (so no
    race is this unit of work's to retry). It has no outbox: a use case that
    records events cannot run on it.
    """

    def __init__(self, connection: Connection) -> None:
        super().__init__()
        self._connection = connection

    def _begin(self) -> None:
        self.payments = PaymentsRepository(self._connection)

    def _commit(self, events: Sequence[Any]) -> None:
        if events:
            raise RuntimeError(f"{len(events)} events recorded where no outbox is written")

    def rollback(self) -> None:
        pass

    def is_conflict(self, error: BaseException) -> bool:
        return False
