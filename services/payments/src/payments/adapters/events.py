"""Domain events -> ``astra.payments.v1`` event messages, as outbox rows.

Events leave the context: they carry a payment's summary (ids, amounts, states, the
last 4 characters of the counterparty's account), never an account number or a name.
"""

from __future__ import annotations

from astra.payments.v1 import events_pb2 as ev
from astra.payments.v1 import payments_pb2 as pb
from chassis.events.writer import OutboxMessage
from chassis.protos import set_timestamp
from google.protobuf.message import Message

from payments.adapters.protos import payment_to_pb, report_to_pb, state_to_pb
from payments.domain.events import CustomerDataErased, PaymentsEvent, PaymentStateChanged

EVENT_SOURCE = "//astra.payments"


def payment_summary(payment: pb.Payment) -> ev.PaymentSummary:
    """What an event tells of a payment: the message without its personal data."""
    summary = ev.PaymentSummary(
        id=payment.id,
        kind=payment.kind,
        state=payment.state,
        customer_id=payment.customer_id,
        amount=payment.amount,
        currency=payment.currency,
        fee=payment.fee,
        counterparty_account_last4=payment.counterparty.account_number[-4:],
        original_payment_id=payment.original_payment_id,
        refunded_amount=payment.refunded_amount,
        reason=payment.reason,
        review_reason=payment.review_reason,
        bank_payment_id=payment.bank_payment_id,
        ledger_account_id=payment.ledger_account_id,
        ledger_pending=payment.ledger_pending,
    )
    summary.create_time.CopyFrom(payment.create_time)
    summary.update_time.CopyFrom(payment.update_time)
    return summary


def to_outbox_message(event: PaymentsEvent) -> OutboxMessage:
    message: Message
    if isinstance(event, PaymentStateChanged):
        message = ev.PaymentStateChanged(
            payment=payment_summary(payment_to_pb(event.payment, history=False)),
            previous_state=state_to_pb(event.previous_state),  # type: ignore[arg-type]
            state=state_to_pb(event.state),  # type: ignore[arg-type]
            reason=event.reason,
        )
    elif isinstance(event, CustomerDataErased):
        message = ev.CustomerDataErased(
            customer_id=event.customer_id, payment_count=event.payment_count
        )
    else:
        message = ev.ReconciliationCompleted(run=report_to_pb(event.report))
    set_timestamp(message.occur_time, event.occurred_at)
    return OutboxMessage(
        event_type=message.DESCRIPTOR.full_name,
        aggregate_id=event.aggregate_id,
        payload=message.SerializeToString(),
        occurred_at=event.occurred_at,
    )
