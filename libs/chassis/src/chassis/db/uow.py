"""The unit of work: one business transaction and the events it produced.

A use case runs inside a unit of work; aggregates (or the use case) record
domain events; ``commit`` maps them to outbox rows and writes them in the same
transaction as the state change. Nothing is published from inside the
transaction: the relay does that after commit.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from chassis.db.retry import run_with_conflict_retry
from chassis.events.writer import OutboxMessage, OutboxWriter, with_trace_context

EventMapper = Callable[[Any], OutboxMessage]


class UnitOfWork:
    """A transaction with its events. ``orm = False`` subclasses get a plain Core connection.

    Contexts whose aggregates the ORM maps use the Session; a context that works
    with Core only (the ledger's set-based hot path) skips the Session's
    bookkeeping, measurable when transactions are small and many.
    """

    orm: ClassVar[bool] = True

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
        self._connection: Connection | None = None

    def __enter__(self) -> Self:
        self._recorded = []
        if self.orm:
            self._session = Session(self._engine, expire_on_commit=False, autoflush=True)
            self._open_repositories(self._session)
        else:
            self._connection = self._engine.connect()
            self._connection.begin()
            self._open_core_repositories(self._connection)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            try:
                self._session.rollback()
            finally:
                self._session.close()
                self._session = None
        if self._connection is not None:
            try:
                self._connection.rollback()
            finally:
                self._connection.close()
                self._connection = None

    def _open_repositories(self, session: Session) -> None:
        """Subclasses attach their repositories to the session here."""

    def _open_core_repositories(self, connection: Connection) -> None:
        """``orm = False`` subclasses attach their repositories to the connection here."""

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
        if self._connection is not None:
            return self._connection
        return self.session.connection()

    def record(self, *events: Any) -> None:
        self._recorded.extend(events)

    def commit(self) -> None:
        if self._session is not None:
            self._session.flush()
        connection = self.connection
        events = [*self._aggregate_events(), *self._recorded]
        if events and self._outbox is not None and self._event_mapper is not None:
            messages = [self._event_mapper(e) for e in events]
            self._outbox.write(connection, with_trace_context(messages))
        if self._session is not None:
            self._session.commit()
        else:
            connection.commit()
        self._recorded = []
        self.committed_events.extend(events)

    def rollback(self) -> None:
        if self._session is not None:
            self._session.rollback()
        else:
            self.connection.rollback()
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
