"""Advisory locks (chassis.db.locks) on PostgreSQL: one holder at a time across connections."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from astra_testkit.postgres import PostgresServer
from chassis.db.engine import create_db_engine
from chassis.db.locks import (
    advisory_lock,
    lock_class,
    lock_key,
    try_advisory_lock,
    try_lock,
    unlock,
    unlock_all,
)
from sqlalchemy import Engine, text


@pytest.fixture
def engine(postgres: PostgresServer) -> Iterator[Engine]:
    name = postgres.create_database(prefix="astra_t_locks")
    engine = create_db_engine(postgres.url_for(name), pool_size=4)
    yield engine
    engine.dispose()
    postgres.drop_database(name)


def advisory_locks_held(engine: Engine) -> int:
    """Advisory locks held in this test's database (pg_locks shows the whole server's)."""
    with engine.connect() as connection:
        return int(
            connection.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database())"
                )
            ).scalar_one()
        )


def test_keys_from_names_are_stable_and_classes_fit_int4() -> None:
    # The keys processes of earlier versions took: old and new must meet on one lock.
    assert lock_key("astra-payments-bank-feed") == 3245161766
    assert lock_key("astra-payments-bank-feed") == lock_key("astra-payments-bank-feed")
    assert lock_key("a") != lock_key("b")
    assert 0 <= lock_class("astra-outbox-lane:ledger") <= 2**31 - 1
    assert 0 <= lock_class("\u00e9\u00e9\x00" * 100) <= 2**31 - 1


def test_a_try_lock_is_held_by_one_engine_at_a_time_and_freed_after_the_block(
    engine: Engine, postgres: PostgresServer
) -> None:
    other = create_db_engine(str(engine.url.render_as_string(hide_password=False)), pool_size=1)
    try:
        with try_advisory_lock(engine, "astra-test-one") as first:
            assert first is True
            with try_advisory_lock(other, "astra-test-one") as second:
                assert second is False
            with try_advisory_lock(other, "astra-test-another") as unrelated:
                assert unrelated is True
            assert advisory_locks_held(engine) == 1
        assert advisory_locks_held(engine) == 0
        with try_advisory_lock(other, "astra-test-one") as after:
            assert after is True
    finally:
        other.dispose()


def test_a_try_lock_is_freed_when_the_block_raises(engine: Engine) -> None:
    def fail_while_holding() -> None:
        with try_advisory_lock(engine, 42) as held:
            assert held
            raise RuntimeError("work failed")

    with pytest.raises(RuntimeError):
        fail_while_holding()
    assert advisory_locks_held(engine) == 0


def test_a_blocking_lock_waits_for_its_holder(engine: Engine) -> None:
    order: list[str] = []
    holding = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with engine.connect() as connection, advisory_lock(connection, "astra-test-wait"):
            order.append("first in")
            holding.set()
            release.wait(30)
            order.append("first out")

    thread = threading.Thread(target=holder)
    thread.start()
    assert holding.wait(30)
    waiter_done = threading.Event()

    def waiter() -> None:
        with engine.connect() as connection, advisory_lock(connection, "astra-test-wait"):
            order.append("second in")
        waiter_done.set()

    second = threading.Thread(target=waiter)
    second.start()
    assert not waiter_done.wait(0.5)  # still waiting while the first holds it
    release.set()
    thread.join(30)
    second.join(30)
    assert order == ["first in", "first out", "second in"]
    assert advisory_locks_held(engine) == 0


def test_two_part_keys_and_unlock_all(engine: Engine) -> None:
    cls = lock_class("astra-test-lanes")
    with engine.connect() as mine, engine.connect() as theirs:
        assert try_lock(mine, (cls, 1))
        assert try_lock(mine, (cls, 2))
        assert not try_lock(theirs, (cls, 1))
        assert try_lock(theirs, (cls, 3))
        assert unlock(mine, (cls, 2))
        assert not unlock(mine, (cls, 3))  # theirs, not mine
        assert try_lock(theirs, (cls, 2))
        unlock_all(mine)
        assert try_lock(theirs, (cls, 1))
        unlock_all(theirs)
    assert advisory_locks_held(engine) == 0


def test_on_sqlite_the_lock_is_always_ours(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'one.db'}")
    try:
        with try_advisory_lock(engine, "x") as first, try_advisory_lock(engine, "x") as second:
            assert (first, second) == (True, True)
        with engine.connect() as connection, advisory_lock(connection, "x"):
            assert connection.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()
