"""Sanctions screening: each customer's latest screening and the analyst's decision

Revision ID: 0006_sanctions_screening
Revises: 0005_requesters
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_sanctions_screening"
down_revision: str | None = "0005_requesters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("sanctions_screening", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("sanctions_screening")
