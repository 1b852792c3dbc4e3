"""Alembic environment of the ledger's own database."""

from chassis.db.migrations import run_env
from ledger.adapters.tables import metadata

run_env(metadata, lock_name="astra-ledger-migrations")
