"""Who asked: a requesters table, referenced by accounts and transfers

Revision ID: 0004_requesters
Revises: 0003

Every account and transfer records the client (and customer) that asked and the
call's request id. The journal is large and hot, so the three values live once
per distinct requester in ``requesters`` and each row carries a 16-byte key
(``requester_id``). Adding a nullable column without a default rewrites nothing
on PostgreSQL; rows written before this revision have none.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_requesters"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "requesters",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("client_id", sa.String(length=80), nullable=False),
        sa.Column("customer_id", sa.String(length=80), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=False),
    )
    op.add_column("accounts", sa.Column("requester_id", sa.Uuid(), nullable=True))
    op.add_column("transfers", sa.Column("requester_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    op.drop_column("transfers", "requester_id")
    op.drop_column("accounts", "requester_id")
    op.drop_table("requesters")
