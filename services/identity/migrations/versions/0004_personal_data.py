"""Customers' name and e-mail sealed with a data key per customer; events without them

Revision ID: 0004_personal_data
Revises: 0003_keyed_secret_hashes
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from astra.identity.v1 import events_pb2 as ev
from astra.identity.v1 import identity_pb2 as pb
from chassis.pii import Envelope
from identity.adapters.repository import PERSONAL_FIELDS, customer_field_place
from identity.config import IdentitySettings

revision: str = "0004_personal_data"
down_revision: str | None = "0003_keyed_secret_hashes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _envelope() -> Envelope:
    # Given by bootstrap (its settings), else read from the environment like the service.
    keys = context.config.attributes.get("key_encryption_keys")
    return Envelope(keys or IdentitySettings().key_encryption_keys())


def upgrade() -> None:
    op.create_table(
        "data_keys",
        sa.Column("subject_id", sa.String(64), primary_key=True),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("display_name_sealed", sa.LargeBinary, nullable=True))
        batch.add_column(sa.Column("email_sealed", sa.LargeBinary, nullable=True))
        batch.add_column(sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, display_name, email FROM customers")).all()
    if rows:
        envelope = _envelope()
        keys, sealed = [], []
        for customer_id, display_name, email in rows:
            wrapped = envelope.new_wrapped_key()
            keys.append({"subject_id": customer_id, "wrapped_key": wrapped})
            plain = {"display_name": display_name, "email": email}
            sealed.append(
                {
                    "id": customer_id,
                    **{
                        column: envelope.seal(
                            wrapped, plain[field], customer_field_place(field, customer_id)
                        )
                        for field, column in (
                            (f, f"{f}_sealed") for f, _attribute in PERSONAL_FIELDS
                        )
                    },
                }
            )
        bind.execute(
            sa.text("INSERT INTO data_keys (subject_id, wrapped_key) VALUES (:subject_id, :wrapped_key)"),
            keys,
        )
        bind.execute(
            sa.text(
                "UPDATE customers SET display_name_sealed = :display_name_sealed, "
                "email_sealed = :email_sealed WHERE id = :id"
            ),
            sealed,
        )
    # The plaintext goes, and the unkeyed digest of it (a replay now compares the fields).
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("display_name")
        batch.drop_column("email")
        batch.drop_column("fingerprint")
    _strip_created_events(bind)


def _strip_created_events(bind: sa.Connection) -> None:
    """CustomerCreated rows still in the outbox carried the whole customer: rewritten
    with ids only. Their old field 1 is a Customer, which EraseCustomerResponse's field 1
    also is, so that message reads it."""
    rows = bind.execute(
        sa.text("SELECT id, payload FROM outbox WHERE event_type = :type"),
        {"type": ev.CustomerCreated.DESCRIPTOR.full_name},
    ).all()
    rewritten = []
    for row_id, payload in rows:
        old = pb.EraseCustomerResponse.FromString(payload).customer
        new = ev.CustomerCreated(
            customer_id=old.id, kyc_status=old.kyc_status, kyc_version=old.kyc_version
        )
        new.create_time.CopyFrom(old.create_time)
        new.occur_time.CopyFrom(ev.CustomerCreated.FromString(payload).occur_time)
        rewritten.append({"id": row_id, "payload": new.SerializeToString()})
    if rewritten:
        bind.execute(sa.text("UPDATE outbox SET payload = :payload WHERE id = :id"), rewritten)


def downgrade() -> None:
    # The plaintext is not brought back: decrypting personal data into clear columns is
    # not a migration's job. The columns return empty.
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("display_name", sa.String(200), nullable=False, server_default=""))
        batch.add_column(sa.Column("email", sa.String(254), nullable=False, server_default=""))
        batch.add_column(sa.Column("fingerprint", sa.String(64), nullable=False, server_default=""))
        batch.drop_column("erased_at")
        batch.drop_column("email_sealed")
        batch.drop_column("display_name_sealed")
    op.drop_table("data_keys")
