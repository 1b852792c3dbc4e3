"""Payments' units of work on SQLAlchemy Core: the repository on one connection."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from chassis.db.data_keys import DataKeys
from chassis.db.uow import CoreUnitOfWork, EventsWriter
from sqlalchemy import Connection, Engine

from payments.adapters.repository import PaymentsRepository
from payments.service_layer.unit_of_work import PaymentsUnitOfWork


class SqlPaymentsUnitOfWork(CoreUnitOfWork, PaymentsUnitOfWork):
    # Core only: payments' repository writes rows with Core statements.
    def __init__(
        self,
        engine: Engine,
        data_keys: DataKeys,
        write_events: EventsWriter | None = None,
        on_commit: Callable[[Sequence[Any]], None] | None = None,
    ) -> None:
        super().__init__(engine, write_events, on_commit)
        self._data_keys = data_keys

    def _open_repositories(self, connection: Connection) -> None:
        self.payments = PaymentsRepository(connection, self._data_keys)


class JoinedPaymentsUnitOfWork(PaymentsUnitOfWork):
    """Payments' repository on a transaction someone else owns: an event handler's, which
    records the event in the inbox in the same transaction.

    Its commit makes nothing durable and its rollback undoes nothing: the owner
    commits or rolls back the whole, and runs it again after a lost race (so no
    race is this unit of work's to retry). Events recorded go to the outbox in
    that transaction when ``write_events`` is given; without it, a use case that
    records events cannot run on it.
    """

    def __init__(
        self,
        connection: Connection,
        data_keys: DataKeys,
        write_events: EventsWriter | None = None,
    ) -> None:
        super().__init__()
        self._connection = connection
        self._data_keys = data_keys
        self._write_events = write_events

    def _begin(self) -> None:
        self.payments = PaymentsRepository(self._connection, self._data_keys)

    def _commit(self, events: Sequence[Any]) -> None:
        if not events:
            return
        if self._write_events is None:
            raise RuntimeError(f"{len(events)} events recorded where no outbox is written")
        self._write_events(self._connection, events)

    def rollback(self) -> None:
        pass

    def is_conflict(self, error: BaseException) -> bool:
        return False
