"""SQL parameters and the values PostgreSQL quotes in its errors never reach the log."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog
from astra_testkit.postgres import PostgresServer
from chassis.db.engine import create_db_engine
from chassis.logging import REDACTED, configure_logging
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

EMAIL = "grace.hopper.7f3a@example.com"
BAD_NUMBER = "not-a-number-9c41"


@pytest.fixture
def engine(postgres: PostgresServer) -> Iterator[Engine]:
    name = postgres.create_database(prefix="astra_t_logs")
    engine = create_db_engine(postgres.url_for(name), pool_size=1)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE people (email text UNIQUE, age integer NOT NULL)"))
        connection.execute(text("INSERT INTO people VALUES (:email, 1)"), {"email": EMAIL})
    yield engine
    engine.dispose()
    postgres.drop_database(name)


def failure(engine: Engine, statement: str, parameters: dict[str, object]) -> DBAPIError:
    with pytest.raises(DBAPIError) as raised, engine.begin() as connection:
        connection.execute(text(statement), parameters)
    return raised.value


def test_unique_and_data_errors_are_logged_without_their_values(engine: Engine) -> None:
    duplicate = failure(engine, "INSERT INTO people VALUES (:email, 2)", {"email": EMAIL})
    bad_type = failure(
        engine, "INSERT INTO people VALUES ('x', CAST(:age AS integer))", {"age": BAD_NUMBER}
    )
    not_null = failure(engine, "INSERT INTO people VALUES (:email, NULL)", {"email": "x" + EMAIL})
    # The driver's own text does quote them: this is what must not reach the log.
    assert EMAIL in str(duplicate.orig)
    assert BAD_NUMBER in str(bad_type.orig)

    stream = io.StringIO()
    configure_logging("test", "INFO", stream=stream)
    try:
        for error in (duplicate, bad_type, not_null):
            try:
                raise error
            except DBAPIError:
                structlog.get_logger("t").exception("call failed", error=str(error))
                logging.getLogger("library").exception("statement failed")
    finally:
        configure_logging("test", "INFO")
    log = stream.getvalue()
    assert log.count("UniqueViolation") >= 2
    assert "InvalidTextRepresentation" in log
    assert REDACTED in log
    assert EMAIL not in log
    assert BAD_NUMBER not in log
