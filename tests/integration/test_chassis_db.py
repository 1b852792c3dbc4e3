"""The database plumbing: a connection the server dropped costs a retry, not an error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from astra_testkit.postgres import PostgresServer
from chassis.db.engine import create_db_engine
from chassis.db.retry import is_conflict, is_database_unavailable, run_with_conflict_retry
from chassis.kernel.errors import RetryTransaction
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError


@pytest.fixture
def database(postgres: PostgresServer) -> Iterator[tuple[str, str]]:
    name = postgres.create_database(prefix="astra_t_chassis")
    yield name, postgres.url_for(name)
    postgres.drop_database(name)


@pytest.fixture
def engine(database: tuple[str, str]) -> Iterator[Engine]:
    engine = create_db_engine(database[1], pool_size=2)
    yield engine
    engine.dispose()


def terminate_backends(postgres: PostgresServer, name: str) -> None:
    """Drop every connection to the database from the server side, as a restart would."""
    with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )


def backend_count(postgres: PostgresServer, name: str) -> int:
    with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
        ).fetchone()
        assert row is not None
        return int(row[0])


def test_a_dropped_pooled_connection_is_replaced_transparently(
    postgres: PostgresServer, database: tuple[str, str], engine: Engine
) -> None:
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar_one() == 1
    assert backend_count(postgres, database[0]) == 1  # the pooled connection stays open
    terminate_backends(postgres, database[0])

    def work() -> int:
        with engine.begin() as connection:
            return int(connection.execute(text("SELECT 41 + 1")).scalar_one())

    assert run_with_conflict_retry(work) == 42


def test_an_unreachable_database_is_unavailable_not_a_conflict() -> None:
    engine = create_db_engine("postgresql://postgres@127.0.0.1:1/none", pool_size=1)
    try:
        with pytest.raises(OperationalError) as caught, engine.connect():
            pass
        assert is_database_unavailable(caught.value)
    finally:
        engine.dispose()


def test_raw_psycopg_errors_count_like_the_ones_sqlalchemy_wraps(
    postgres: PostgresServer, database: tuple[str, str], engine: Engine
) -> None:
    """The ledger's set-based paths write through psycopg cursors, bypassing SQLAlchemy."""
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE ids (id text PRIMARY KEY)"))
        connection.execute(text("INSERT INTO ids VALUES ('taken')"))
    keys = iter(["taken", "free"])

    def insert_next() -> str:
        key = next(keys)
        with engine.begin() as connection:
            raw = connection.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cursor:
                cursor.execute("INSERT INTO ids VALUES (%s)", (key,))
        return key

    # The unique violation (another writer got there first) is retried.
    assert run_with_conflict_retry(insert_next) == "free"
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        terminate_backends(postgres, database[0])
        with pytest.raises(psycopg.OperationalError) as caught, raw.cursor() as cursor:
            cursor.execute("SELECT 1")
    assert is_database_unavailable(caught.value)
    assert not is_conflict(caught.value)
    assert is_conflict(RetryTransaction("what it read changed"))


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_a_failed_statement_never_carries_its_parameters_into_the_error_text(
    backend: str, database: tuple[str, str], tmp_path: Path
) -> None:
    # The error text is what an unexpected failure logs: it must not carry a client's values.
    url = database[1] if backend == "postgresql" else f"sqlite:///{tmp_path / 'x.db'}"
    engine = create_db_engine(url, pool_size=1)
    try:
        with pytest.raises(DBAPIError) as failed, engine.connect() as connection:
            connection.execute(
                text("SELECT CAST(:value AS INTEGER) FROM no_such_table"),
                {"value": "client-secret-value"},
            )
    finally:
        engine.dispose()
    assert "client-secret-value" not in str(failed.value)
    assert "parameters hidden" in str(failed.value)
