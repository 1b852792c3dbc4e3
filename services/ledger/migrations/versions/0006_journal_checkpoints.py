"""The journal's checkpoints: its head (sequence, hash) at a time

Revision ID: 0006_journal_checkpoints
Revises: 0005_journal

The checkpoint worker stores one row per head it saw move (the sequence is the
key, so two ledger processes that see the same head store it once) and
publishes it as ``JournalCheckpointed``. ``astra-ledger verify-journal
--from-checkpoint`` starts from the newest and checks that the record at its
sequence still has its hash (services/ledger/JOURNAL.md).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_journal_checkpoints"
down_revision: str | None = "0005_journal"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "journal_checkpoints",
        sa.Column("sequence", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("journal_checkpoints")
