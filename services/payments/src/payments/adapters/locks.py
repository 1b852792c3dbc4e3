"""One holder at a time across processes, for work that must not run twice at once."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator

from chassis.db.engine import is_postgres
from sqlalchemy import Engine, text


@contextlib.contextmanager
def advisory_lock(engine: Engine, name: str) -> Iterator[bool]:
    """Yields True while this process holds ``name`` (a PostgreSQL session advisory lock).

    On SQLite there is one process per database file: the lock is always ours.
    """
    if not is_postgres(engine):
        yield True
        return
    key = zlib.crc32(name.encode())
    with engine.connect() as connection:
        got = bool(connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
        connection.commit()
        try:
            yield got
        finally:
            if got:
                with contextlib.suppress(Exception):
                    connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    connection.commit()
