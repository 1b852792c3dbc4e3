"""Counterparties' account numbers and names sealed with a data key per customer; events
and fingerprints without them

Revision ID: 0006_personal_data
Revises: 0005_requesters
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from astra.payments.v1 import events_pb2 as ev
from astra.payments.v1 import payments_pb2 as pb
from chassis.pii import Envelope
from payments.adapters.events import payment_summary
from payments.adapters.repository import counterparty_place
from payments.config import PaymentsSettings
from payments.domain.model import BankAccount, PaymentRequest
from payments.domain.states import PaymentKind

revision: str = "0006_personal_data"
down_revision: str | None = "0005_requesters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("counterparty_account", "counterparty_name")


def _envelope() -> Envelope:
    # Given by bootstrap (its settings), else read from the environment like the service.
    keys = context.config.attributes.get("key_encryption_keys")
    return Envelope(keys or PaymentsSettings().key_encryption_keys())


def upgrade() -> None:
    op.create_table(
        "data_keys",
        sa.Column("subject_id", sa.String(64), primary_key=True),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    with op.batch_alter_table("payments") as batch:
        for column in _COLUMNS:
            batch.add_column(sa.Column(f"{column}_sealed", sa.LargeBinary, nullable=True))
    bind = op.get_bind()
    rows = bind.execute(
        sa.text("SELECT id, customer_id, counterparty_account, counterparty_name FROM payments")
    ).all()
    _refingerprint(bind)
    if rows:
        envelope = _envelope()
        keys: dict[str, bytes] = {}
        sealed = []
        for payment_id, customer_id, account, name in rows:
            wrapped = keys.setdefault(customer_id, envelope.new_wrapped_key())
            plain = {"counterparty_account": account, "counterparty_name": name}
            sealed.append(
                {
                    "id": payment_id,
                    **{
                        f"{c}_sealed": envelope.seal(
                            wrapped, plain[c], counterparty_place(c, payment_id)
                        )
                        for c in _COLUMNS
                    },
                }
            )
        bind.execute(
            sa.text(
                "INSERT INTO data_keys (subject_id, wrapped_key) VALUES (:subject_id, :wrapped_key)"
            ),
            [{"subject_id": s, "wrapped_key": k} for s, k in keys.items()],
        )
        bind.execute(
            sa.text(
                "UPDATE payments SET counterparty_account_sealed = :counterparty_account_sealed, "
                "counterparty_name_sealed = :counterparty_name_sealed WHERE id = :id"
            ),
            sealed,
        )
    with op.batch_alter_table("payments") as batch:
        for column in _COLUMNS:
            batch.drop_column(column)
    _strip_payment_events(bind)


def _refingerprint(bind: sa.Connection) -> None:
    """Fingerprints no longer digest the counterparty (an unkeyed digest of an account
    number gives it away to a guess): recomputed from what the request asked for."""
    rows = bind.execute(
        sa.text(
            "SELECT id, kind, customer_id, amount, currency, description, original_payment_id "
            "FROM payments"
        )
    ).all()
    digests = [
        {
            "id": r.id,
            "fingerprint": PaymentRequest(
                r.id,
                PaymentKind(r.kind),
                r.customer_id,
                r.amount,
                r.currency,
                BankAccount(""),
                r.description,
                r.original_payment_id,
            ).fingerprint(),
        }
        for r in rows
    ]
    if digests:
        bind.execute(sa.text("UPDATE payments SET fingerprint = :fingerprint WHERE id = :id"), digests)


def _strip_payment_events(bind: sa.Connection) -> None:
    """PaymentStateChanged rows still in the outbox carried the whole Payment: rewritten
    with its summary. Their old field 1 is a Payment, which GetPaymentResponse's field 1
    also is, so that message reads it."""
    rows = bind.execute(
        sa.text("SELECT id, payload FROM outbox WHERE event_type = :type"),
        {"type": ev.PaymentStateChanged.DESCRIPTOR.full_name},
    ).all()
    rewritten = []
    for row_id, payload in rows:
        old_payment = pb.GetPaymentResponse.FromString(payload).payment
        old = ev.PaymentStateChanged.FromString(payload)
        new = ev.PaymentStateChanged(
            payment=payment_summary(old_payment),
            previous_state=old.previous_state,
            state=old.state,
            reason=old.reason,
        )
        new.occur_time.CopyFrom(old.occur_time)
        rewritten.append({"id": row_id, "payload": new.SerializeToString()})
    if rewritten:
        bind.execute(sa.text("UPDATE outbox SET payload = :payload WHERE id = :id"), rewritten)


def downgrade() -> None:
    # The plaintext is not brought back (see 0004_personal_data of identity): empty columns.
    with op.batch_alter_table("payments") as batch:
        batch.add_column(
            sa.Column("counterparty_account", sa.String(34), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("counterparty_name", sa.String(140), nullable=False, server_default="")
        )
        for column in _COLUMNS:
            batch.drop_column(f"{column}_sealed")
    op.drop_table("data_keys")
