"""Payments' unit of work: a transaction, its repository, and its events bound for the outbox."""

from __future__ import annotations

from collections.abc import Iterable

from chassis.db.uow import CoreUnitOfWork
from chassis.kernel.uow import EventSource
from sqlalchemy import Connection

from payments.adapters.repository import PaymentsRepository


class PaymentsUnitOfWork(CoreUnitOfWork):
    # Core only: payments' repository writes rows with Core statements.
    payments: PaymentsRepository

    def _open_repositories(self, connection: Connection) -> None:
        self.payments = PaymentsRepository(connection)

    def repositories(self) -> Iterable[EventSource]:
        return (self.payments,)
