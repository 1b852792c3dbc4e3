"""Units of work on SQLAlchemy: the concrete side of ``chassis.kernel.uow``.

``CoreUnitOfWork`` runs one transaction on one Core connection; a context whose
aggregates the ORM maps uses ``SessionUnitOfWork``, whose session owns that
connection. Either writes the events its repositories' aggregates recorded to
the outbox in the same transaction as the state change, and retries races the
database reports (``chassis.db.retry.is_conflict``). Nothing is published from
inside the transaction: the relay does that after commit.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from chassis.db.retry import is_conflict
from chassis.kernel.uow import UnitOfWork

# Writes a transaction's domain events on its connection (the context's outbox:
# ``chassis.events.writer.OutboxWriter.events_writer``). Injected, so that the
# database layer knows nothing of events.
EventsWriter = Callable[[Connection, Sequence[Any]], None]


class SqlUnitOfWork(UnitOfWork):
    """What both kinds share: the engine, the outbox, and which errors are lost races."""

    def __init__(
        self,
        engine: Engine,
        write_events: EventsWriter | None = None,
        on_commit: Callable[[Sequence[Any]], None] | None = None,
    ) -> None:
        super().__init__(on_commit)
        self._engine = engine
        self._write = write_events
        self._connection: Connection | None = None

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            raise RuntimeError("unit of work used outside its with-block")
        return self._connection

    def _write_events(self, events: Sequence[Any]) -> None:
        if not events:
            return
        if self._write is None:
            # Committing state without its events would lose them for good.
            raise RuntimeError(f"{len(events)} events recorded where no events writer is set")
        self._write(self.connection, events)

    def is_conflict(self, error: BaseException) -> bool:
        return super().is_conflict(error) or is_conflict(error)


class CoreUnitOfWork(SqlUnitOfWork):
    """One transaction on one Core connection; subclasses open their repositories on it."""

    @abc.abstractmethod
    def _open_repositories(self, connection: Connection) -> None:
        """Attach this unit of work's repositories to the transaction's connection."""

    def _begin(self) -> None:
        self._connection = self._engine.connect()
        self._connection.begin()
        self._open_repositories(self._connection)

    def _commit(self, events: Sequence[Any]) -> None:
        self._write_events(events)
        self.connection.commit()

    def rollback(self) -> None:
        if self._connection is None:
            return
        try:
            self._connection.rollback()
        finally:
            self._connection.close()
            self._connection = None


class SessionUnitOfWork(SqlUnitOfWork):
    """The same on an ORM session (the context's aggregates are mapped imperatively)."""

    _session: Session | None = None

    @property
    def session(self) -> Session:
        if self._session is None:
            raise RuntimeError("unit of work used outside its with-block")
        return self._session

    @abc.abstractmethod
    def _open_repositories(self, session: Session) -> None:
        """Attach this unit of work's repositories to the transaction's session."""

    def _begin(self) -> None:
        self._session = Session(self._engine, expire_on_commit=False, autoflush=True)
        self._connection = self._session.connection()
        self._open_repositories(self._session)

    def _commit(self, events: Sequence[Any]) -> None:
        self.session.flush()
        self._write_events(events)
        self.session.commit()

    def rollback(self) -> None:
        if self._session is None:
            return
        try:
            self._session.rollback()
        finally:
            self._session.close()
            self._session = None
            self._connection = None
