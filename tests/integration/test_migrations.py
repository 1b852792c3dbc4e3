"""Each context's migrations build exactly the schema its code declares, and go back down."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from astra_testkit.postgres import PostgresServer
from chassis.db.engine import create_db_engine
from chassis.db.migrations import alembic_config
from sqlalchemy import MetaData

ROOT = Path(__file__).resolve().parents[2]


def _ledger() -> MetaData:
    from ledger.adapters.tables import metadata

    return metadata


def _identity() -> MetaData:
    from identity.adapters.tables import metadata

    return metadata


def _payments() -> MetaData:
    from payments.adapters.tables import metadata

    return metadata


CONTEXTS: dict[str, Callable[[], MetaData]] = {
    "ledger": _ledger,
    "identity": _identity,
    "payments": _payments,
}


@pytest.mark.parametrize("context", sorted(CONTEXTS))
def test_migrations_match_the_tables_and_downgrade_cleanly(
    postgres: PostgresServer, context: str
) -> None:
    name = postgres.create_database(prefix=f"astra_t_mig_{context}")
    url = postgres.url_for(name)
    config = alembic_config(url, ROOT / "services" / context / "migrations")
    try:
        command.upgrade(config, "head")
        engine = create_db_engine(url, pool_size=1)
        try:
            with engine.connect() as connection:
                diff = compare_metadata(MigrationContext.configure(connection), CONTEXTS[context]())
        finally:
            engine.dispose()
        assert diff == []
        command.downgrade(config, "base")
        command.upgrade(config, "head")
    finally:
        postgres.drop_database(name)
