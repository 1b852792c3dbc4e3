"""Who asked: the creating customer and request id, the reviewer's customer, request id and note

Revision ID: 0005_requesters
Revises: 0004

0004 recorded the creating and reviewing service clients; a write now records
the whole requester (client, customer when a customer token asked, request id)
and a review keeps its note. Columns with a constant default: PostgreSQL adds
them without rewriting the table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_requesters"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("created_by_customer", 64),
    ("created_request_id", 128),
    ("reviewed_by_customer", 64),
    ("reviewed_request_id", 128),
    ("review_note", 140),
)


def upgrade() -> None:
    for name, length in COLUMNS:
        op.add_column(
            "payments",
            sa.Column(name, sa.String(length=length), nullable=False, server_default=""),
        )


def downgrade() -> None:
    for name, _ in reversed(COLUMNS):
        op.drop_column("payments", name)
