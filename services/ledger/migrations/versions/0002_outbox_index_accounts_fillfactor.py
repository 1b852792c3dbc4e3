"""Outbox published_at index only for published rows; accounts fillfactor 70

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PUBLISHED = sa.text("published_at IS NOT NULL")


def upgrade() -> None:
    # Every insert put a NULL into this index; only purge uses it, for published rows.
    op.drop_index("ix_outbox_published_at", table_name="outbox")
    op.create_index(
        "ix_outbox_published_at",
        "outbox",
        ["published_at"],
        postgresql_where=PUBLISHED,
        sqlite_where=PUBLISHED,
    )
    if op.get_bind().dialect.name == "postgresql":
        # Room on each page for the next version of a row: balance updates become HOT
        # (no index touched), which matters for the accounts every batch rewrites.
        op.execute("ALTER TABLE accounts SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE accounts RESET (fillfactor)")
    op.drop_index("ix_outbox_published_at", table_name="outbox")
    op.create_index("ix_outbox_published_at", "outbox", ["published_at"])
