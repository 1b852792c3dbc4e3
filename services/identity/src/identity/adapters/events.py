"""Domain events -> ``astra.identity.v1`` event messages, as outbox rows."""

from __future__ import annotations

from astra.identity.v1 import events_pb2 as ev
from astra.identity.v1 import identity_pb2 as pb
from chassis.events.writer import OutboxMessage
from chassis.protos import set_timestamp
from google.protobuf.message import Message

from identity.adapters.protos import status_to_pb
from identity.domain.events import (
    CustomerCreated,
    CustomerErased,
    CustomerKycChanged,
    IdentityEvent,
)
from identity.domain.model import KycStatus

EVENT_SOURCE = "//astra.identity"


def to_outbox_message(event: IdentityEvent) -> OutboxMessage:
    message: Message
    if isinstance(event, CustomerCreated):
        created = ev.CustomerCreated(
            customer_id=event.customer_id, kyc_status=pb.KYC_STATUS_UNVERIFIED, kyc_version=0
        )
        set_timestamp(created.create_time, event.occurred_at)
        message = created
    elif isinstance(event, CustomerKycChanged):
        message = ev.CustomerKycChanged(
            customer_id=event.customer_id,
            previous_status=status_to_pb(KycStatus[event.previous_status]),
            status=status_to_pb(KycStatus[event.status]),
            reason=event.reason,
            kyc_version=event.kyc_version,
            actor=event.actor,
        )
    elif isinstance(event, CustomerErased):
        message = ev.CustomerErased(customer_id=event.customer_id, actor=event.actor)
    else:  # pragma: no cover - the union is closed
        raise TypeError(f"unknown identity event {event!r}")
    set_timestamp(message.occur_time, event.occurred_at)
    return OutboxMessage(
        event_type=message.DESCRIPTOR.full_name,
        aggregate_id=event.aggregate_id,
        payload=message.SerializeToString(),
        occurred_at=event.occurred_at,
    )
