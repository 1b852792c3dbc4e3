"""Transaction monitoring and the learned fraud score: counterparty tags, alerts, and each
payment's risk decision

Revision ID: 0008_risk_monitoring
Revises: 0007_sanctions_screening
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_risk_monitoring"
down_revision: str | None = "0007_sanctions_screening"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Payments made before have no tag: monitoring sees their counterparties as unknown.
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("counterparty_tag", sa.String(32), nullable=True))
    op.create_index(
        "ix_payments_customer_counterparty",
        "payments",
        ["customer_id", "counterparty_tag", "created_at"],
    )
    op.create_table(
        "payment_risk_decisions",
        sa.Column("payment_id", sa.String(64), primary_key=True),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("explanation", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "risk_alerts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("rule", sa.SmallInteger, nullable=False),
        sa.Column("state", sa.SmallInteger, nullable=False),
        sa.Column("payment_ids", sa.Text, nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolution", sa.SmallInteger, nullable=True),
        sa.Column("resolved_by", sa.String(64), nullable=False, server_default=""),
        sa.Column("resolved_by_customer", sa.String(64), nullable=False, server_default=""),
        sa.Column("resolved_request_id", sa.String(128), nullable=False, server_default=""),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.String(140), nullable=False, server_default=""),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("ix_risk_alerts_customer_open", "risk_alerts", ["customer_id", "state"])
    op.create_index("ix_risk_alerts_state", "risk_alerts", ["state", "id"])


def downgrade() -> None:
    op.drop_index("ix_risk_alerts_state", table_name="risk_alerts")
    op.drop_index("ix_risk_alerts_customer_open", table_name="risk_alerts")
    op.drop_table("risk_alerts")
    op.drop_table("payment_risk_decisions")
    op.drop_index("ix_payments_customer_counterparty", table_name="payments")
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("counterparty_tag")
