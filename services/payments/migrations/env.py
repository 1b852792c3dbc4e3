"""Alembic environment of payments' own database."""

from chassis.db.migrations import run_env
from payments.adapters.tables import metadata

run_env(metadata, lock_name="astra-payments-migrations")
