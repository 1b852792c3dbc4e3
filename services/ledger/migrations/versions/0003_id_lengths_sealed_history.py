"""Account ids of the contract's full length; accounts.sealed_through for final as-of reads

Revision ID: 0003
Revises: 0002

The contract allows "acct_" and 60 characters (65); accounts.id, entries.account_id
and accounts.customer_id were 64. Every id column is now 80 wide, like the transfer
ids. On PostgreSQL widening a varchar rewrites nothing. SQLite does not enforce a
declared length, so there only the new column is added (recreating the tables to
restate a length it ignores would copy the journal for nothing).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WIDENED = (("accounts", "id"), ("accounts", "customer_id"), ("entries", "account_id"))


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if _postgres():
        for table, column in WIDENED:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE varchar(80)")
    op.add_column(
        "accounts", sa.Column("sealed_through", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("accounts", "sealed_through")
    if _postgres():
        for table, column in WIDENED:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE varchar(64)")
