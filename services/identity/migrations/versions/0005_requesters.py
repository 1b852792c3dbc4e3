"""Who asked: customers, KYC changes and clients record the requester of their writes

Revision ID: 0005_requesters
Revises: 0004_personal_data

Customer creation, each KYC change (submission, review), client registration and
disabling record the verified caller's client id, customer id (customer tokens)
and the call's request id, as three narrow columns each (empty when not recorded,
e.g. rows written before this revision or by the operator CLI). Constant defaults:
PostgreSQL adds them without rewriting the tables.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_requesters"
down_revision: str | None = "0004_personal_data"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WRITES = (
    ("customers", "created"),
    ("kyc_changes", "changed"),
    ("clients", "created"),
    ("clients", "disabled"),
)
PARTS = (("by_client", 64), ("by_customer", 64), ("request_id", 128))


def upgrade() -> None:
    for table, prefix in WRITES:
        for part, length in PARTS:
            op.add_column(
                table,
                sa.Column(
                    f"{prefix}_{part}", sa.String(length=length), nullable=False, server_default=""
                ),
            )


def downgrade() -> None:
    for table, prefix in reversed(WRITES):
        for part, _ in reversed(PARTS):
            op.drop_column(table, f"{prefix}_{part}")
