"""The ledger's tables (SQLAlchemy Core). Migrations in services/ledger/migrations build them.

The ledger uses Core, not the ORM, everywhere: its hot path is set-based, and
its aggregates are snapshots decided in memory (``ledger.domain.batch``).

``transfers`` and ``entries`` are the journal: immutable (on PostgreSQL a
trigger from the initial migration refuses UPDATE, DELETE and TRUNCATE). A
pending transfer's status is derived from the transfer that resolved it;
``open_holds`` only indexes the holds still open, so the expiry worker finds
due holds without scanning history.
"""

from __future__ import annotations

from chassis.events.schema import inbox_table, outbox_table
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    Uuid,
    text,
)

metadata = MetaData()

# Every id column: a type prefix, "_" and up to 60 characters (chassis.kernel.ids)
# fit with room to spare; the longest, "acct_" and 60, is 65.
ID_LENGTH = 80

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("normal_side", SmallInteger, nullable=False),
    Column("debits_must_not_exceed_credits", Boolean, nullable=False),
    Column("credits_must_not_exceed_debits", Boolean, nullable=False),
    Column("debits_posted", BigInteger, nullable=False, server_default="0"),
    Column("credits_posted", BigInteger, nullable=False, server_default="0"),
    Column("debits_pending", BigInteger, nullable=False, server_default="0"),
    Column("credits_pending", BigInteger, nullable=False, server_default="0"),
    Column("entry_sequence", BigInteger, nullable=False, server_default="0"),
    Column("last_entry_at", DateTime(timezone=True), nullable=True),
    # No entry will ever be stamped at or before this instant: an as-of read of
    # a recent instant sets it (see SqlLedgerRepository.seal_history), writers stamp after it.
    Column("sealed_through", DateTime(timezone=True), nullable=True),
    Column("metadata", Text, nullable=True),
    Column("external_reference", String(128), nullable=False, server_default=""),
    Column("customer_id", String(ID_LENGTH), nullable=False, server_default=""),
    Column("fingerprint", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Who opened it (``requesters``); NULL for accounts opened before 0004.
    Column("requester_id", Uuid, nullable=True),
    CheckConstraint(
        "debits_posted >= 0 AND credits_posted >= 0 AND debits_pending >= 0 "
        "AND credits_pending >= 0",
        name="ck_accounts_sums_non_negative",
    ),
    Index("ix_accounts_customer", "customer_id", "id"),
)

transfers = Table(
    "transfers",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("kind", SmallInteger, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("reason", String(64), nullable=True),
    Column("message", Text, nullable=True),
    Column("fingerprint", String(64), nullable=False),
    # JSON list of [account_id, direction, amount, currency]; empty for refusals.
    Column("legs", Text, nullable=False),
    Column("pending_transfer_id", String(ID_LENGTH), nullable=True),
    Column("reversed_transfer_id", String(ID_LENGTH), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("metadata", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Who created it (``requesters``); NULL for the ledger's own (expiries) and before 0004.
    Column("requester_id", Uuid, nullable=True),
    # A hold is resolved once and a transfer reversed once, whatever races.
    Index(
        "ux_transfers_resolution",
        "pending_transfer_id",
        unique=True,
        postgresql_where=text("ok AND pending_transfer_id IS NOT NULL"),
        sqlite_where=text("ok AND pending_transfer_id IS NOT NULL"),
    ),
    Index(
        "ux_transfers_reversal",
        "reversed_transfer_id",
        unique=True,
        postgresql_where=text("ok AND reversed_transfer_id IS NOT NULL"),
        sqlite_where=text("ok AND reversed_transfer_id IS NOT NULL"),
    ),
)

# Who asked for a write: one row per distinct (client, customer, request id), keyed by a
# digest of the three, so a batch of a thousand transfers from one call adds one row and
# each transfer 16 bytes. No foreign key: the journal's COPY would check every row.
requesters = Table(
    "requesters",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("client_id", String(ID_LENGTH), nullable=False),
    Column("customer_id", String(ID_LENGTH), nullable=True),
    Column("request_id", String(128), nullable=False),
)

entries = Table(
    "entries",
    metadata,
    Column("account_id", String(ID_LENGTH), primary_key=True),
    Column("sequence", BigInteger, primary_key=True),
    Column("transfer_id", String(ID_LENGTH), nullable=False),
    Column("kind", SmallInteger, nullable=False),
    Column("entry_type", SmallInteger, nullable=False),
    Column("direction", SmallInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("debits_posted", BigInteger, nullable=False),
    Column("credits_posted", BigInteger, nullable=False),
    Column("debits_pending", BigInteger, nullable=False),
    Column("credits_pending", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("amount > 0", name="ck_entries_amount_positive"),
    Index("ix_entries_account_time", "account_id", "created_at"),
)

open_holds = Table(
    "open_holds",
    metadata,
    Column("transfer_id", String(ID_LENGTH), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Index("ix_open_holds_expiry", "expires_at"),
)

# The hash-chained journal (ledger.domain.journal): one record per change, sequence 1, 2, 3...
# with no gaps, in commit order. Immutable like ``entries`` (triggers from 0005_journal).
journal = Table(
    "journal",
    metadata,
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(32), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("prev_hash", LargeBinary(32), nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    # When the record was committed; informational, not hashed.
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

# The chain's head, one row (id 1, inserted by the migration): every appending transaction
# locks it, so processes committing at once append one linear chain.
journal_head = Table(
    "journal_head",
    metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("sequence", BigInteger, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    CheckConstraint("id = 1", name="ck_journal_head_one_row"),
)

# The journal's head as the checkpoint worker stored (and published) it; one row per
# sequence, so processes that see the same head store it once (migration 0006).
journal_checkpoints = Table(
    "journal_checkpoints",
    metadata,
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)

__all__ = [
    "accounts",
    "entries",
    "inbox",
    "journal",
    "journal_checkpoints",
    "journal_head",
    "metadata",
    "open_holds",
    "outbox",
    "requesters",
    "transfers",
]
