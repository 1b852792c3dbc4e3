"""PostgreSQL session advisory locks: one holder at a time across processes.

A session lock belongs to the connection that took it: it survives commits
and is freed when that connection closes, so a process that dies gives its
locks back at once. Each statement below is committed straight away, so the
connection never sits idle in a transaction while it holds a lock.

Keys are one ``bigint`` or a pair of ``int4`` (PostgreSQL's two key spaces);
``lock_key`` and ``lock_class`` derive them from a name, stably across
versions, so that an old and a new process contend for the same lock.

On SQLite (``make run``) a database file has one process: the context managers
hold nothing there and say the lock is theirs.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator

from sqlalchemy import Connection, Engine, text

from chassis.db.engine import is_postgres

LockKey = int | tuple[int, int]


def lock_key(name: str) -> int:
    """The one-``bigint`` key of ``name``."""
    return zlib.crc32(name.encode())


def lock_class(name: str) -> int:
    """The first ``int4`` of a two-part key (``(lock_class(name), n)``): positive, so it reads
    back unchanged from ``pg_locks.classid``."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def _call(connection: Connection, function: str, key: LockKey) -> object:
    if isinstance(key, tuple):
        statement = text(f"SELECT {function}(:a, :b)")
        params = {"a": key[0], "b": key[1]}
    else:
        statement = text(f"SELECT {function}(:a)")
        params = {"a": key}
    value = connection.execute(statement, params).scalar()
    connection.commit()
    return value


def try_lock(connection: Connection, key: LockKey) -> bool:
    """Take ``key`` on this connection if nobody holds it; True if taken (or already held)."""
    return bool(_call(connection, "pg_try_advisory_lock", key))


def lock(connection: Connection, key: LockKey) -> None:
    """Take ``key`` on this connection, waiting for its holder to let go."""
    _call(connection, "pg_advisory_lock", key)


def unlock(connection: Connection, key: LockKey) -> bool:
    """Let go of ``key``; False if this connection did not hold it."""
    return bool(_call(connection, "pg_advisory_unlock", key))


def unlock_all(connection: Connection) -> None:
    """Let go of every advisory lock this connection holds."""
    connection.execute(text("SELECT pg_advisory_unlock_all()"))
    connection.commit()


def _key(key: LockKey | str) -> LockKey:
    return lock_key(key) if isinstance(key, str) else key


@contextlib.contextmanager
def try_advisory_lock(engine: Engine, key: LockKey | str) -> Iterator[bool]:
    """Yields True while this process holds ``key`` (a name or a key), False if another does.

    The lock is held on a connection of its own, taken from ``engine`` for the
    length of the block: work inside may use any other connection.
    """
    if not is_postgres(engine):
        yield True
        return
    resolved = _key(key)
    with engine.connect() as connection:
        held = try_lock(connection, resolved)
        try:
            yield held
        finally:
            if held:
                # Should the unlock fail, closing the connection frees the lock anyway.
                with contextlib.suppress(Exception):
                    unlock(connection, resolved)


@contextlib.contextmanager
def advisory_lock(connection: Connection, key: LockKey | str) -> Iterator[None]:
    """Hold ``key`` on ``connection`` for the block, waiting for it first if another holds it."""
    if not is_postgres(connection.engine):
        yield
        return
    resolved = _key(key)
    lock(connection, resolved)
    try:
        yield
    finally:
        unlock(connection, resolved)
