"""In-memory storage for the fakes of a context's adapters: tables, transactions, a unit of work.

A context's in-memory repositories keep their rows in ``MemoryTable``s of one
``MemoryDatabase`` and honour the contract of the SQL ones, so that use cases,
tests and a simulation can run on them without I/O:

- one transaction at a time: ``begin`` takes the database's lock until ``end``
  (serializable, which is all one process needs of row locks);
- every change a transaction makes is logged with how to undo it, and a
  transaction that ends without committing is undone: a fake never keeps half
  of a failed transaction;
- rows go in and come out as copies: an object a use case changes changes the
  table only when a repository writes it back (``IdentityMap``, as an ORM
  session flushes what it loaded);
- unique indexes, partial ones included (a key function returning None leaves
  the row out), refuse a second row with ``RetryTransaction``: like a unique
  violation in the database, it is a lost race, and the retried transaction
  finds the row that won;
- what a commit wrote is final, with its events kept in commit order
  (``MemoryDatabase.events``, the outbox of the fake).
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from copy import deepcopy
from typing import Any, Generic, TypeVar

from chassis.kernel.errors import RetryTransaction
from chassis.kernel.uow import UnitOfWork

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_MISSING: Any = object()


class MemoryDatabase:
    """The committed rows of a context's in-memory tables, and the one transaction under way."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._undo: list[Callable[[], None]] | None = None
        # Every event a commit wrote, oldest first.
        self.events: list[Any] = []

    def begin(self) -> None:
        if self._owner == threading.get_ident():
            # A second transaction on the thread that holds the first would wait on itself.
            raise RuntimeError("a transaction is already under way on this thread")
        self._lock.acquire()
        self._owner = threading.get_ident()
        self._undo = []

    def changed(self, undo: Callable[[], None]) -> None:
        """Log how to undo a change just made; tables call this."""
        if self._undo is None:
            raise RuntimeError("an in-memory table changed outside a transaction")
        self._undo.append(undo)

    def commit(self, events: Sequence[Any]) -> None:
        """Make what was changed so far final, with ``events``."""
        if self._undo is None:
            raise RuntimeError("commit outside a transaction")
        self._undo = []
        self.events.extend(events)

    def end(self) -> None:
        """Undo whatever was not committed and let the next transaction in (idempotent)."""
        if self._undo is None:
            return
        try:
            for undo in reversed(self._undo):
                undo()
        finally:
            self._undo = None
            self._owner = None
            self._lock.release()


class MemoryTable(Generic[K, V]):
    """Rows by primary key, stored and handed out as copies, with unique indexes.

    ``unique`` names each index's key function: a row whose function returns None
    is not in that index (a partial index).
    """

    def __init__(
        self,
        database: MemoryDatabase,
        *,
        copy: Callable[[V], V] = deepcopy,
        unique: Mapping[str, Callable[[V], Hashable | None]] | None = None,
    ) -> None:
        self._database = database
        self._copy = copy
        self._rows: dict[K, V] = {}
        self._unique = dict(unique or {})
        self._indexes: dict[str, dict[Hashable, K]] = {name: {} for name in self._unique}

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: K) -> bool:
        return key in self._rows

    def get(self, key: K) -> V | None:
        row = self._rows.get(key)
        return self._copy(row) if row is not None else None

    def get_many(self, keys: Iterable[K]) -> dict[K, V]:
        return {key: self._copy(row) for key in keys if (row := self._rows.get(key)) is not None}

    def by(self, index: str, value: Hashable) -> V | None:
        """The row whose ``index`` key is ``value``, if any."""
        key = self._indexes[index].get(value)
        return self.get(key) if key is not None else None

    def select(
        self,
        where: Callable[[V], bool] | None = None,
        *,
        order_by: Callable[[V], Any] | None = None,
        limit: int | None = None,
    ) -> list[V]:
        rows = [row for row in self._rows.values() if where is None or where(row)]
        if order_by is not None:
            rows.sort(key=order_by)
        if limit is not None:
            rows = rows[:limit]
        return [self._copy(row) for row in rows]

    def insert(self, key: K, row: V) -> None:
        """Add a row; a key already taken is a lost race (``RetryTransaction``)."""
        if key in self._rows:
            raise RetryTransaction(f"{key!r} exists already")
        self._write(key, self._copy(row))

    def put(self, key: K, row: V) -> None:
        """Add or replace a row."""
        self._write(key, self._copy(row))

    def delete(self, key: K) -> None:
        if key in self._rows:
            self._write(key, _MISSING)

    def _write(self, key: K, row: V) -> None:
        for name, index_key in self._unique.items():
            value = index_key(row) if row is not _MISSING else None
            if value is not None and self._indexes[name].get(value, key) != key:
                raise RetryTransaction(f"{name} {value!r} is taken")
        previous = self._rows.get(key, _MISSING)
        self._set(key, row)
        self._database.changed(lambda: self._set(key, previous))

    def _set(self, key: K, row: V) -> None:
        """Store ``row`` (or remove the key) and keep the indexes in step; no checks."""
        previous = self._rows.get(key, _MISSING)
        for name, index_key in self._unique.items():
            index = self._indexes[name]
            if previous is not _MISSING and (old := index_key(previous)) is not None:
                index.pop(old, None)
            if row is not _MISSING and (new := index_key(row)) is not None:
                index[new] = key
        if row is _MISSING:
            self._rows.pop(key, None)
        else:
            self._rows[key] = row


class IdentityMap(Generic[K, V]):
    """What one transaction read or added through a repository, written back at ``flush``.

    The same key gives the same object for the whole transaction, and what the use
    case changed on it reaches the table at the next flush, as an ORM session does
    (queries flush first, so they see the transaction's own changes).
    """

    def __init__(self, table: MemoryTable[K, V], key: Callable[[V], K]) -> None:
        self._table = table
        self._key = key
        self._loaded: dict[K, V] = {}
        self._new: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        if key in self._new:
            return self._new[key]
        if key not in self._loaded:
            row = self._table.get(key)
            if row is None:
                return None
            self._loaded[key] = row
        return self._loaded[key]

    def by(self, index: str, value: Hashable) -> V | None:
        self.flush()
        row = self._table.by(index, value)
        return self._mapped(row) if row is not None else None

    def select(
        self,
        where: Callable[[V], bool] | None = None,
        *,
        order_by: Callable[[V], Any] | None = None,
        limit: int | None = None,
    ) -> list[V]:
        self.flush()
        return [
            self._mapped(row) for row in self._table.select(where, order_by=order_by, limit=limit)
        ]

    def add(self, row: V) -> None:
        self._new[self._key(row)] = row

    def flush(self) -> None:
        """Write back what was loaded (changed or not), then insert what was added."""
        for key, row in self._loaded.items():
            self._table.put(key, row)
        new, self._new = self._new, {}
        for key, row in new.items():
            self._table.insert(key, row)
            self._loaded[key] = row

    def _mapped(self, row: V) -> V:
        return self._loaded.setdefault(self._key(row), row)


D = TypeVar("D", bound=MemoryDatabase)


class MemoryUnitOfWork(UnitOfWork, Generic[D]):
    """A unit of work on a ``MemoryDatabase``: subclasses open their repositories on it."""

    def __init__(
        self, database: D, on_commit: Callable[[Sequence[Any]], None] | None = None
    ) -> None:
        super().__init__(on_commit)
        self.database = database

    @abc.abstractmethod
    def _open_repositories(self, database: D) -> None:
        """Open this unit of work's repositories on the database, for one transaction."""

    def _flush(self) -> None:
        """Write back what the repositories hold (those with an ``IdentityMap``)."""

    def _begin(self) -> None:
        self.database.begin()
        try:
            self._open_repositories(self.database)
        except BaseException:
            self.database.end()
            raise

    def _commit(self, events: Sequence[Any]) -> None:
        self._flush()
        self.database.commit(events)

    def rollback(self) -> None:
        self.database.end()
