"""The unit of work: one business transaction and the events it produced.

A use case runs inside a unit of work; aggregates (or the use case) record
domain events; ``commit`` maps them to outbox rows and writes them in the same
transaction as the state change. Nothing is published from inside the
transaction: the relay does that after commit.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from chassis.db.retry import run_with_conflict_retry
from chassis.outbox.writer import OutboxMessage, OutboxWriter
from chassis.tracing import with_trace_context

EventMapper = Callable[[Any], OutboxMessage]


class UnitOfWork:
    def __init__(
        self,
        engine: Engine,
        outbox: OutboxWriter | None = None,
        event_mapper: EventMapper | None = None,
    ) -> None:
        if (outbox is None) != (event_mapper is None):
            raise ValueError("an outbox needs an event mapper, and the reverse")
        self._engine = engine
        self._outbox = outbox
        self._event_mapper = event_mapper
        self._recorded: list[Any] = []
        self.committed_events: list[Any] = []
        self._session: Session | None = None

    def __enter__(self) -> Self:
        self._session = Session(self._engine, expire_on_commit=False, autoflush=True)
        self._recorded = []
        self._open_repositories(self._session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._session is not None
        try:
            self._session.rollback()
        finally:
            self._session.close()
            self._session = None

    def _open_repositories(self, session: Session) -> None:
        """Subclasses attach their repositories to the session here."""

    def _aggregate_events(self) -> list[Any]:
        """Subclasses return events their repositories' aggregates recorded."""
        return []

    @property
    def session(self) -> Session:
        if self._session is None:
            raise RuntimeError("unit of work used outside its with-block")
        return self._session

    @property
    def connection(self) -> Connection:
        return self.session.connection()

    def record(self, *events: Any) -> None:
        self._recorded.extend(events)

    def commit(self) -> None:
        session = self.session
        session.flush()
        events = [*self._aggregate_events(), *self._recorded]
        if events and self._outbox is not None and self._event_mapper is not None:
            messages = [self._event_mapper(e) for e in events]
            self._outbox.write(session.connection(), with_trace_context(messages))
        session.commit()
        self._recorded = []
        self.committed_events.extend(events)

    def rollback(self) -> None:
        self.session.rollback()
        self._recorded = []


U = TypeVar("U", bound=UnitOfWork)
T = TypeVar("T")


def run_in_transaction(
    uow_factory: Callable[[], U], work: Callable[[U], T], *, attempts: int = 10
) -> T:
    """Run ``work`` in a fresh unit of work and commit; start over if it lost a race."""

    def attempt() -> T:
        with uow_factory() as uow:
            result = work(uow)
            uow.commit()
            return result

    return run_with_conflict_retry(attempt, attempts=attempts)
