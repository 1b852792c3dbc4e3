"""payments' ledger account column holds any ledger account id; who created and reviewed a payment

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _postgres() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def upgrade() -> None:
    # "acct_" and 60: the longest account id of the ledger's contract. SQLite does not
    # enforce lengths (and would rebuild the table to change one): PostgreSQL only.
    if _postgres():
        op.alter_column(
            "payments",
            "ledger_account_id",
            existing_type=sa.String(length=64),
            type_=sa.String(length=65),
            existing_nullable=False,
        )
    op.add_column(
        "payments", sa.Column("created_by", sa.String(length=64), nullable=False, server_default="")
    )
    op.add_column(
        "payments",
        sa.Column("reviewed_by", sa.String(length=64), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_column("payments", "reviewed_by")
    op.drop_column("payments", "created_by")
    if _postgres():
        op.alter_column(
            "payments",
            "ledger_account_id",
            existing_type=sa.String(length=65),
            type_=sa.String(length=64),
            existing_nullable=False,
        )
