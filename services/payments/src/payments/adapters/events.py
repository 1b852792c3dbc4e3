"""Domain events -> ``astra.payments.v1`` event messages, as outbox rows."""

from __future__ import annotations

from astra.payments.v1 import events_pb2 as ev
from chassis.events.writer import OutboxMessage
from chassis.protos import set_timestamp
from google.protobuf.message import Message

from payments.adapters.protos import payment_to_pb, report_to_pb, state_to_pb
from payments.domain.events import PaymentsEvent, PaymentStateChanged

EVENT_SOURCE = "//astra.payments"


def to_outbox_message(event: PaymentsEvent) -> OutboxMessage:
    message: Message
    if isinstance(event, PaymentStateChanged):
        message = ev.PaymentStateChanged(
            payment=payment_to_pb(event.payment, history=False),
            previous_state=state_to_pb(event.previous_state),  # type: ignore[arg-type]
            state=state_to_pb(event.state),  # type: ignore[arg-type]
            reason=event.reason,
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
