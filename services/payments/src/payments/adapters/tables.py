"""Payments' tables (SQLAlchemy Core). Migrations in services/payments/migrations build them."""

from __future__ import annotations

from chassis.db.data_keys import data_keys_table
from chassis.events.schema import SubscriberTables, outbox_table
from chassis.kernel.ids import MAX_ID_BODY
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()


# The longest id of a prefix by the suite's id rule: "<prefix>_" and 1 to 60 characters.
def _id_length(prefix: str) -> int:
    return len(prefix) + 1 + MAX_ID_BODY


payments = Table(
    "payments",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", SmallInteger, nullable=False),
    Column("state", SmallInteger, nullable=False),
    Column("customer_id", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("fee", BigInteger, nullable=False),
    # Personal data, sealed with the customer's data key (``data_keys``) and bound to its
    # row and column; NULL once the customer's data was erased.
    Column("counterparty_account_sealed", LargeBinary, nullable=True),
    Column("counterparty_name_sealed", LargeBinary, nullable=True),
    # ISO 3166-1 alpha-2 or empty (0007); emptied with the sealed fields on erasure.
    Column("counterparty_country", String(2), nullable=False, server_default=""),
    Column("description", String(140), nullable=False),
    Column("original_payment_id", String(64), nullable=False),
    Column("fingerprint", String(32), nullable=False),
    # The customer's ledger account: an "acct_" id of the ledger's contract.
    Column("ledger_account_id", String(_id_length("acct")), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("review_required", Boolean, nullable=False),
    Column("review_reason", String(64), nullable=False),
    Column("review_outcome", String(16), nullable=False),
    Column("bank_payment_id", String(64), nullable=False),
    Column("bank_attempts", Integer, nullable=False),
    Column("bank_settled_at", DateTime(timezone=True), nullable=True),
    Column("bank_returned_at", DateTime(timezone=True), nullable=True),
    Column("ledger_done", SmallInteger, nullable=False),
    Column("hold_uncertain", Boolean, nullable=False),
    Column("ledger_error", String(200), nullable=False),
    Column("next_action_at", DateTime(timezone=True), nullable=True),
    Column("leased_until", DateTime(timezone=True), nullable=True),
    Column("retries", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    Column("transition_count", Integer, nullable=False),
    Column("trace_context", String(128), nullable=False, server_default=""),
    # The service clients that created it and reviewed it ("cli_" ids; empty when unknown).
    Column("created_by", String(_id_length("cli")), nullable=False, server_default=""),
    Column("reviewed_by", String(_id_length("cli")), nullable=False, server_default=""),
    # The rest of who asked (0005): the creating customer token's customer and the
    # creating and reviewing calls' request ids; the reviewer's note.
    Column("created_by_customer", String(_id_length("cus")), nullable=False, server_default=""),
    Column("created_request_id", String(128), nullable=False, server_default=""),
    Column("reviewed_by_customer", String(_id_length("cus")), nullable=False, server_default=""),
    Column("reviewed_request_id", String(128), nullable=False, server_default=""),
    Column("review_note", String(140), nullable=False, server_default=""),
    # The counterparty's sanctions screening as JSON (0007; ``adapters.repository``), or NULL.
    Column("sanctions_screening", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The counterparty as monitoring compares them (0008): a digest of the account number
    # keyed by the customer's data key; NULL for payments made before, and once erased.
    Column("counterparty_tag", String(32), nullable=True),
    # The workers' queue: only payments with something to do are indexed.
    Index(
        "ix_payments_due",
        "next_action_at",
        postgresql_where=text("next_action_at IS NOT NULL"),
        sqlite_where=text("next_action_at IS NOT NULL"),
    ),
    # Velocity per customer, and listing a customer's payments.
    Index("ix_payments_customer_time", "customer_id", "created_at"),
    Index(
        "ix_payments_original",
        "original_payment_id",
        postgresql_where=text("original_payment_id <> ''"),
        sqlite_where=text("original_payment_id <> ''"),
    ),
    Index("ix_payments_bank_settled", "bank_settled_at"),
    Index("ix_payments_bank_returned", "bank_returned_at"),
    Index("ix_payments_state", "state", "id"),
    # Whether a customer paid a counterparty before a time: one probe.
    Index("ix_payments_customer_counterparty", "customer_id", "counterparty_tag", "created_at"),
)

# Why each payout and collection was approved, held or declined (0008): the rules'
# verdict, the model's score and top features, the alerts raised, as JSON.
payment_risk_decisions = Table(
    "payment_risk_decisions",
    metadata,
    Column("payment_id", String(64), primary_key=True),
    Column("verdict", String(16), nullable=False),
    Column("reason", String(64), nullable=False),
    # Empty when the payment was not scored.
    Column("model_version", String(64), nullable=False),
    Column("explanation", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Monitoring's alerts (0008), for reviewers.
risk_alerts = Table(
    "risk_alerts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("customer_id", String(64), nullable=False),
    Column("rule", SmallInteger, nullable=False),
    Column("state", SmallInteger, nullable=False),
    # JSON: the payments that make the pattern; the rule's figures.
    Column("payment_ids", Text, nullable=False),
    Column("evidence", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("resolution", SmallInteger, nullable=True),
    Column("resolved_by", String(_id_length("cli")), nullable=False, server_default=""),
    Column("resolved_by_customer", String(_id_length("cus")), nullable=False, server_default=""),
    Column("resolved_request_id", String(128), nullable=False, server_default=""),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Column("note", String(140), nullable=False, server_default=""),
    Column("version", Integer, nullable=False),
    Index("ix_risk_alerts_customer_open", "customer_id", "state"),
    Index("ix_risk_alerts_state", "state", "id"),
)

payment_transitions = Table(
    "payment_transitions",
    metadata,
    Column("payment_id", String(64), primary_key=True),
    Column("sequence", Integer, primary_key=True),
    Column("from_state", SmallInteger, nullable=True),
    Column("to_state", SmallInteger, nullable=False),
    Column("reason", String(64), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
)

# Payments' own projection of identity's customers (fed by identity's events).
customer_kyc = Table(
    "customer_kyc",
    metadata,
    Column("customer_id", String(64), primary_key=True),
    Column("kyc_status", String(32), nullable=False),
    Column("kyc_version", BigInteger, nullable=False),
    Column("customer_since", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Where the bank's event feed was read up to.
bank_cursor = Table(
    "bank_cursor",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
)

reconciliation_runs = Table(
    "reconciliation_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("statement_date", Date, nullable=False),
    Column("line_count", Integer, nullable=False),
    Column("matched", Integer, nullable=False),
    # JSON list of breaks.
    Column("breaks", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# One data key per customer, wrapped by the key-encryption key: deleting it erases the
# customer's personal data here wherever it was sealed (crypto-shredding).
data_keys = data_keys_table(metadata)

outbox = outbox_table(metadata)
subscriber_tables = SubscriberTables.define(metadata)
inbox = subscriber_tables.inbox

__all__ = [
    "bank_cursor",
    "customer_kyc",
    "data_keys",
    "inbox",
    "metadata",
    "outbox",
    "payment_risk_decisions",
    "payment_transitions",
    "payments",
    "reconciliation_runs",
    "risk_alerts",
    "subscriber_tables",
]
