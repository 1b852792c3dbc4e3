"""Payments' unit of work: a transaction, its repository, and its events bound for the outbox."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from chassis.db.uow import EventMapper, UnitOfWork
from chassis.events.writer import OutboxWriter
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from payments.adapters.repository import PaymentsRepository


class PaymentsUnitOfWork(UnitOfWork):
    payments: PaymentsRepository

    def __init__(
        self,
        engine: Engine,
        outbox: OutboxWriter | None,
        event_mapper: EventMapper | None,
        on_commit: Callable[[Sequence[Any]], None] | None = None,
    ) -> None:
        super().__init__(engine, outbox, event_mapper)
        self._on_commit = on_commit

    def _open_repositories(self, session: Session) -> None:
        self.payments = PaymentsRepository(session.connection())

    def _aggregate_events(self) -> list[Any]:
        return self.payments.take_events()

    def commit(self) -> None:
        before = len(self.committed_events)
        super().commit()
        if self._on_commit is not None:
            self._on_commit(self.committed_events[before:])
