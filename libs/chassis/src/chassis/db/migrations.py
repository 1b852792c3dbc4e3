"""Alembic migrations, one history per context.

``upgrade`` applies a service's migrations programmatically (at start, in tests,
or from the service's ``migrate`` command). ``run_env`` is the body of every
service's ``migrations/env.py``; on PostgreSQL it holds an advisory lock, so
several processes starting at once migrate one after another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData

from chassis.db.engine import create_db_engine, is_postgres, normalize_url
from chassis.db.locks import advisory_lock


def alembic_config(database_url: str, script_location: Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    # ConfigParser interpolation: a literal % must be doubled.
    config.set_main_option("sqlalchemy.url", normalize_url(database_url).replace("%", "%%"))
    return config


def upgrade(
    database_url: str, script_location: Path, revision: str = "head", **attributes: Any
) -> None:
    """Apply migrations; ``attributes`` reach them as ``context.config.attributes`` (e.g. the
    key-encryption key a data migration seals existing rows with)."""
    config = alembic_config(database_url, script_location)
    config.attributes.update(attributes)
    command.upgrade(config, revision)


def run_env(target_metadata: MetaData, lock_name: str) -> None:
    """Run migrations online against ``sqlalchemy.url`` (called from env.py)."""
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("sqlalchemy.url is not set for migrations")
    engine = create_db_engine(url, pool_size=1)
    try:
        with engine.connect() as connection, advisory_lock(connection, lock_name):
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                compare_type=True,
                render_as_batch=not is_postgres(engine),
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
    finally:
        engine.dispose()
