"""The inbox: which events a subscription has applied, and how often each one failed.

An event's id goes in the ``inbox`` in the transaction that applies it, so a
redelivered copy finds its id there and has no second effect. Failed attempts
are counted in ``inbox_failures`` in a transaction of their own: a crash or
restart does not reset them. Every call runs on the caller's connection, in
the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Insert, Table
from sqlalchemy.dialects import postgresql, sqlite

from chassis.events.schema import SubscriberTables


def dialect_insert(connection: Connection, table: Table) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (PostgreSQL and SQLite both)."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_ignore(connection: Connection, table: Table, values: Mapping[str, Any]) -> bool:
    """Insert unless the key exists; True when the row is new.

    RETURNING says so reliably: rowcount is -1 for this statement under psycopg.
    """
    primary = next(iter(table.primary_key.columns))
    statement: Insert = dialect_insert(connection, table).values(**values).on_conflict_do_nothing()
    return connection.execute(statement.returning(primary)).first() is not None


class Inbox:
    """One subscription's rows in the inbox tables (keyed by the subscription's short name)."""

    def __init__(self, tables: SubscriberTables, subscription: str) -> None:
        self._tables = tables
        self._subscription = subscription
        self._insert_many_sql = (
            f"INSERT INTO {tables.inbox.name} (subscription, event_id, event_type) "
            "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]) "
            "ON CONFLICT DO NOTHING RETURNING event_id"
        )

    def record(self, connection: Connection, event_id: str, event_type: str) -> bool:
        """Note the event as processed; False when it already was."""
        return insert_ignore(
            connection,
            self._tables.inbox,
            {"subscription": self._subscription, "event_id": event_id, "event_type": event_type},
        )

    def record_many(self, connection: Connection, types: Mapping[str, str]) -> set[str]:
        """Inbox rows for the event ids (mapped to their types) it lacks; the ids it lacked."""
        if connection.dialect.name == "postgresql":
            # One statement text whatever the batch size, the rows as three arrays:
            # psycopg parses and prepares it once. A multi-row VALUES list has a new
            # text for every batch size, parsed again each time.
            result = connection.exec_driver_sql(
                self._insert_many_sql,
                ([self._subscription] * len(types), list(types), list(types.values())),
            )
            return {row[0] for row in result}
        # Parameters given apart from the statement: its compiled form is cached
        # and SQLAlchemy batches the rows; `.values(rows)` compiled anew every time.
        table = self._tables.inbox
        statement = (
            dialect_insert(connection, table).on_conflict_do_nothing().returning(table.c.event_id)
        )
        rows = [
            {"subscription": self._subscription, "event_id": event_id, "event_type": event_type}
            for event_id, event_type in types.items()
        ]
        return {row[0] for row in connection.execute(statement, rows)}

    def count_failure(self, connection: Connection, event_id: str, error: str) -> int:
        """Count one more failed attempt at the event; how many there have been."""
        table = self._tables.failures
        statement = dialect_insert(connection, table).values(
            subscription=self._subscription, event_id=event_id, attempts=1, last_error=error
        )
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.subscription, table.c.event_id],
            set_={
                "attempts": table.c.attempts + 1,
                "last_error": statement.excluded.last_error,
                "failed_at": statement.excluded.failed_at,
            },
        ).returning(table.c.attempts)
        return int(connection.execute(statement).scalar_one())
