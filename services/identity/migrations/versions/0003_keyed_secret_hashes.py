"""Keyed client secret hashes; revoked tokens; the disabled clients' index

Revision ID: 0003_keyed_secret_hashes
Revises: 0002

Client secrets are now verified with HMAC-SHA256 under a key derived from the
key-encryption key (``identity.adapters.crypto.KeyedSecretHasher``), not with
Argon2id. An Argon2id hash cannot be turned into a keyed hash without the
secret, which identity never keeps; so existing hashes are left as they are
and no longer verify: each client registered before this revision needs a
new secret (``astra-identity register-client <id> --reset-secret``), given to
its service before the upgrade is rolled out. That is the honest option:
keeping a legacy Argon2 path, even "verify once then rehash", would keep the
memory-hard work an unauthenticated caller can trigger by naming such a
client, which is what this change removes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_keyed_secret_hashes"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DISABLED = sa.text("disabled_at IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "revoked_tokens",
        sa.Column("token_id", sa.String(64), primary_key=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expire_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_revoked_tokens_revoked_at", "revoked_tokens", ["revoked_at"])
    op.create_index(
        "ix_clients_disabled_at",
        "clients",
        ["disabled_at"],
        postgresql_where=DISABLED,
        sqlite_where=DISABLED,
    )


def downgrade() -> None:
    op.drop_index("ix_clients_disabled_at", table_name="clients")
    op.drop_index("ix_revoked_tokens_revoked_at", table_name="revoked_tokens")
    op.drop_table("revoked_tokens")
