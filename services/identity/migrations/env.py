"""Alembic environment of identity's own database."""

from chassis.db.migrations import run_env
from identity.adapters.tables import metadata

run_env(metadata, lock_name="astra-identity-migrations")
