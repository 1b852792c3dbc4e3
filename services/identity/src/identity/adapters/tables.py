"""Identity's tables (SQLAlchemy Core metadata; the ORM maps the domain onto them in orm.py).

Migrations in services/identity/migrations build them.
"""

from __future__ import annotations

from chassis.db.data_keys import data_keys_table
from chassis.events.schema import inbox_table, outbox_table
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

from identity.adapters.types import (
    JsonObject,
    ScopeList,
    ScreeningColumn,
    UtcDateTime,
    kyc_status_type,
)

metadata = MetaData()


def requester_columns(prefix: str) -> list[Column[str]]:
    """Who asked for a write, flat (``chassis.kernel.audit.flat``): client id, customer id
    (empty for a service client) and the call's request id; empty when not recorded."""
    return [
        Column(f"{prefix}_by_client", String(64), nullable=False, server_default=""),
        Column(f"{prefix}_by_customer", String(64), nullable=False, server_default=""),
        Column(f"{prefix}_request_id", String(128), nullable=False, server_default=""),
    ]


customers = Table(
    "customers",
    metadata,
    Column("id", String(64), primary_key=True),
    # Personal data, sealed with the customer's data key (``data_keys``) and bound to
    # its row and column; NULL once erased.
    Column("display_name_sealed", LargeBinary, nullable=True),
    Column("email_sealed", LargeBinary, nullable=True),
    Column("erased_at", UtcDateTime(), nullable=True),
    Column("kyc_status", kyc_status_type(), nullable=False),
    Column("kyc_reason", Text, nullable=False, server_default=""),
    Column("kyc_version", BigInteger, nullable=False, server_default="0"),
    Column("kyc_updated_at", UtcDateTime(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    *requester_columns("created"),
    # The latest sanctions screening of the name, as JSON (0006; ``types.ScreeningColumn``).
    Column("sanctions_screening", ScreeningColumn(), nullable=True),
    Index("ix_customers_kyc_status", "kyc_status", "id"),
)

# Every KYC change, with its reason: the history is never rewritten.
kyc_changes = Table(
    "kyc_changes",
    metadata,
    Column("customer_id", String(64), ForeignKey("customers.id"), primary_key=True),
    Column("kyc_version", BigInteger, primary_key=True),
    Column("previous_status", kyc_status_type(), nullable=False),
    Column("status", kyc_status_type(), nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("actor", String(128), nullable=False, server_default=""),
    Column("changed_at", UtcDateTime(), nullable=False),
    *requester_columns("changed"),
)

# KYC requests by their client-chosen id, with the outcome a replay returns.
kyc_requests = Table(
    "kyc_requests",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("customer_id", String(64), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("kyc_version", BigInteger, nullable=True),
    Column("error_reason", String(64), nullable=False, server_default=""),
    Column("error_message", Text, nullable=False, server_default=""),
    Column("created_at", UtcDateTime(), nullable=False),
)

clients = Table(
    "clients",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("display_name", String(200), nullable=False),
    # Space-separated, sorted.
    Column("allowed_scopes", ScopeList(), nullable=False),
    # "hmac-sha256$<key tag>$<hex>" (identity.adapters.crypto): never the secret itself.
    Column("secret_hash", String(255), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("disabled_at", UtcDateTime(), nullable=True),
    *requester_columns("created"),
    *requester_columns("disabled"),
    # Verifiers ask every few seconds for the clients disabled since their last answer.
    Index(
        "ix_clients_disabled_at",
        "disabled_at",
        postgresql_where=text("disabled_at IS NOT NULL"),
        sqlite_where=text("disabled_at IS NOT NULL"),
    ),
)

# Tokens revoked before their expiry, listed for the verifiers until ``expire_at``.
revoked_tokens = Table(
    "revoked_tokens",
    metadata,
    Column("token_id", String(64), primary_key=True),
    Column("revoked_at", UtcDateTime(), nullable=False),
    Column("expire_at", UtcDateTime(), nullable=False),
    Index("ix_revoked_tokens_revoked_at", "revoked_at"),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("public_jwk", JsonObject(), nullable=False),
    # The PKCS#8 private key encrypted with the key-encryption key (Fernet).
    Column("encrypted_private_key", LargeBinary, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("retire_at", UtcDateTime(), nullable=True),
    Column("request_id", String(64), nullable=False, server_default=""),
    Column("created_at", UtcDateTime(), nullable=False),
    # One signing key at a time, whatever races between processes.
    Index(
        "ux_signing_keys_active",
        "active",
        unique=True,
        postgresql_where=text("active"),
        sqlite_where=text("active"),
    ),
    Index(
        "ux_signing_keys_request",
        "request_id",
        unique=True,
        postgresql_where=text("request_id <> ''"),
        sqlite_where=text("request_id <> ''"),
    ),
)

# One data key per customer, wrapped by the key-encryption key: deleting it erases the
# customer's personal data wherever it was sealed (crypto-shredding).
data_keys = data_keys_table(metadata)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
