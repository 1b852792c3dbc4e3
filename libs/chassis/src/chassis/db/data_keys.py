"""The ``data_keys`` table: one wrapped data key per data subject (``chassis.pii``).

Each context that keeps personal data adds the table to its own MetaData (and
migrations); the statements here run on the caller's connection, inside its
transaction, so a key is created or destroyed with the rows it seals.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from chassis.pii import Envelope


def data_keys_table(metadata: MetaData) -> Table:
    return Table(
        "data_keys",
        metadata,
        Column("subject_id", String(64), primary_key=True),
        # The data key encrypted with the key-encryption key (Fernet).
        Column("wrapped_key", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class DataKeys:
    """Get, create and destroy subjects' wrapped data keys on one connection."""

    def __init__(self, table: Table, envelope: Envelope) -> None:
        self.table = table
        self.envelope = envelope

    def wrapped(self, connection: Connection, subject_ids: Iterable[str]) -> dict[str, bytes]:
        ids = sorted(set(subject_ids))
        if not ids:
            return {}
        t = self.table
        rows = connection.execute(
            select(t.c.subject_id, t.c.wrapped_key).where(t.c.subject_id.in_(ids))
        )
        return {subject: bytes(key) for subject, key in rows}

    def ensure(self, connection: Connection, subject_ids: Iterable[str]) -> dict[str, bytes]:
        """Every subject's wrapped key, made for those without one (a race keeps the first)."""
        ids = sorted(set(subject_ids))
        known = self.wrapped(connection, ids)
        missing = [s for s in ids if s not in known]
        if missing:
            dialect: Any = postgresql if connection.dialect.name == "postgresql" else sqlite
            statement = dialect.insert(self.table).on_conflict_do_nothing(
                index_elements=[self.table.c.subject_id]
            )
            connection.execute(
                statement,
                [
                    {"subject_id": s, "wrapped_key": self.envelope.new_wrapped_key()}
                    for s in missing
                ],
            )
            known.update(self.wrapped(connection, missing))
        return known

    def destroy(self, connection: Connection, subject_id: str) -> bool:
        """Delete the subject's key: whatever it sealed is unreadable from now on."""
        t = self.table
        deleted = connection.execute(
            delete(t).where(t.c.subject_id == subject_id).returning(t.c.wrapped_key)
        ).all()
        # Not kept in this process's memory either.
        for (wrapped,) in deleted:
            self.envelope.forget(bytes(wrapped))
        return bool(deleted)
