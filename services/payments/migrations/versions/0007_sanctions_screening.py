"""Sanctions screening: the counterparty's country and each payment's screening

Revision ID: 0007_sanctions_screening
Revises: 0006_personal_data
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_sanctions_screening"
down_revision: str | None = "0006_personal_data"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(
            sa.Column("counterparty_country", sa.String(2), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("sanctions_screening", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("sanctions_screening")
        batch.drop_column("counterparty_country")
