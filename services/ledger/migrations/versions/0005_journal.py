"""The hash-chained journal: journal and its head

Revision ID: 0005_journal
Revises: 0004_requesters

One record per change (account opened, transfer row written), with a global
gap-free sequence and a hash over the previous record's hash, its sequence and
its canonical body (ledger.domain.journal). ``journal_head`` holds the chain's
head in one row that every appending transaction locks. The journal is immutable
like ``entries``: on PostgreSQL the trigger function of 0001, on SQLite triggers
of its own.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_journal"
down_revision: str | None = "0004_requesters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POSTGRES_IMMUTABLE = """
CREATE TRIGGER journal_immutable BEFORE UPDATE OR DELETE ON journal
  FOR EACH ROW EXECUTE FUNCTION ledger_journal_is_immutable();
CREATE TRIGGER journal_no_truncate BEFORE TRUNCATE ON journal
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_journal_is_immutable();
"""
SQLITE_IMMUTABLE = [
    f"CREATE TRIGGER journal_no_{operation.lower()} BEFORE {operation} ON journal "
    f"BEGIN SELECT RAISE(ABORT, 'the ledger journal is immutable: {operation} on journal "
    "refused'); END"
    for operation in ("UPDATE", "DELETE")
]


def upgrade() -> None:
    op.create_table(
        "journal",
        sa.Column("sequence", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("prev_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sequence"),
    )
    head = op.create_table(
        "journal_head",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_journal_head_one_row"),
        sa.PrimaryKeyConstraint("id"),
    )
    # An empty journal's head: sequence 0, the genesis hash (32 zero bytes).
    op.bulk_insert(head, [{"id": 1, "sequence": 0, "hash": bytes(32)}])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_IMMUTABLE)
    else:
        for statement in SQLITE_IMMUTABLE:
            op.execute(statement)


def downgrade() -> None:
    op.drop_table("journal_head")
    op.drop_table("journal")
