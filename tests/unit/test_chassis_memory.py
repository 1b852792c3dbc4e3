"""The in-memory tables and unit of work the contexts' fakes are built on (no I/O)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest
from chassis.kernel.errors import RetryTransaction
from chassis.kernel.memory import IdentityMap, MemoryDatabase, MemoryTable, MemoryUnitOfWork
from chassis.kernel.uow import EventSource, TracksAggregates, run_in_transaction


@dataclass(eq=False)
class Key:
    kid: str
    active: bool = True
    events: list[str] = field(default_factory=list)

    def retire(self) -> None:
        self.active = False
        self.events.append(f"retired {self.kid}")

    def take_events(self) -> list[str]:
        events, self.events = self.events, []
        return events


class Keys(TracksAggregates):
    def __init__(self, table: MemoryTable[str, Key]) -> None:
        super().__init__()
        self.rows = IdentityMap(table, key=lambda key: key.kid)

    def get(self, kid: str) -> Key | None:
        key = self.rows.get(kid)
        return self.track(key) if key is not None else None

    def active(self) -> Key | None:
        return self.rows.by("active", True)

    def add(self, key: Key) -> None:
        self.rows.add(self.track(key))


class KeyDatabase(MemoryDatabase):
    def __init__(self) -> None:
        super().__init__()
        self.keys: MemoryTable[str, Key] = MemoryTable(
            self, unique={"active": lambda key: True if key.active else None}
        )


class KeyUnitOfWork(MemoryUnitOfWork[KeyDatabase]):
    keys: Keys

    def _open_repositories(self, database: KeyDatabase) -> None:
        self.keys = Keys(database.keys)

    def _flush(self) -> None:
        self.keys.rows.flush()

    def repositories(self) -> Iterable[EventSource]:
        return (self.keys,)


def test_a_committed_change_is_kept_with_its_events_and_rows_come_out_as_copies() -> None:
    db = KeyDatabase()
    with KeyUnitOfWork(db) as uow:
        uow.keys.add(Key("k1"))
        uow.commit()
    with KeyUnitOfWork(db) as uow:
        key = uow.keys.get("k1")
        assert key is not None
        assert key is uow.keys.get("k1")  # one object per row
        key.retire()
        uow.keys.add(Key("k2"))
        uow.commit()
    stored = db.keys.get("k1")
    assert stored is not None
    assert not stored.active
    assert stored is not db.keys.get("k1")
    assert db.events == ["retired k1"]


def test_a_transaction_that_does_not_commit_leaves_nothing_behind() -> None:
    db = KeyDatabase()
    with KeyUnitOfWork(db) as uow:
        uow.keys.add(Key("k1"))
        uow.commit()

    def work(uow: KeyUnitOfWork) -> None:
        key = uow.keys.get("k1")
        assert key is not None
        key.retire()
        uow.keys.add(Key("k2"))
        assert uow.keys.active() is not None  # the query flushed: k2 is the active one now
        raise RuntimeError("crash before the commit")

    with pytest.raises(RuntimeError):
        run_in_transaction(lambda: KeyUnitOfWork(db), work)
    assert [k.kid for k in db.keys.select(order_by=lambda k: k.kid)] == ["k1"]
    assert db.keys.by("active", True) is not None
    assert db.events == []


def test_a_taken_key_or_unique_value_is_a_lost_race_and_nothing_of_it_stays() -> None:
    db = KeyDatabase()
    with KeyUnitOfWork(db) as uow:
        uow.keys.add(Key("k1"))
        uow.commit()
    for rival in (Key("k2"), Key("k1", active=False)):
        with KeyUnitOfWork(db) as uow:
            uow.keys.add(Key("k3", active=False))
            uow.keys.add(rival)
            with pytest.raises(RetryTransaction):
                uow.commit()
        assert [k.kid for k in db.keys.select(order_by=lambda k: k.kid)] == ["k1"]


def test_one_transaction_at_a_time_and_none_nested_on_one_thread() -> None:
    db = KeyDatabase()
    order: list[str] = []
    inside = threading.Event()

    def other() -> None:
        inside.wait()
        with KeyUnitOfWork(db):
            order.append("other")

    thread = threading.Thread(target=other)
    thread.start()
    with KeyUnitOfWork(db):
        inside.set()
        thread.join(0.2)  # it waits for this transaction
        order.append("first")
        with pytest.raises(RuntimeError, match="already under way"), KeyUnitOfWork(db):
            pass
    thread.join()
    assert order == ["first", "other"]
    with pytest.raises(RuntimeError, match="outside a transaction"):
        db.keys.put("k", Key("k"))
