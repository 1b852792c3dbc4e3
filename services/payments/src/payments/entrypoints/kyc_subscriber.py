"""Payments' projection of customers' KYC status, fed by identity's events; and the
erasure of a customer's personal data here when identity erased the customer.

Runs on the chassis subscriber helper: each event is applied in the same
transaction as its inbox row (so a redelivery has no second effect), by the
projection's use case (``use_cases.record_customer_kyc``, on the service's
clock), which keeps the newest ``kyc_version`` whatever order events arrive in.
"""

from __future__ import annotations

from typing import Any

import structlog
from astra.identity.v1 import events_pb2 as identity_events
from chassis.events.clients import context_topic
from chassis.events.decoding import ReceivedEvent
from chassis.events.subscriber import EventSubscriber, subscribe
from chassis.protos import from_timestamp
from sqlalchemy import Connection

from payments.adapters import tables
from payments.adapters.identity_client import kyc_status_name
from payments.bootstrap import Payments
from payments.config import PaymentsSettings
from payments.domain.customers import CustomerKyc
from payments.service_layer.use_cases import erase_customer_data, record_customer_kyc

_log = structlog.get_logger("payments.kyc")


def kyc_handlers(app: Payments) -> dict[Any, Any]:
    """Identity's events, each recorded by the projection's use case in the inbox's
    transaction (``connection``)."""
    clock = app.deps.clock

    def on_customer_created(event: ReceivedEvent[Any], connection: Connection) -> None:
        message: identity_events.CustomerCreated = event.message
        kyc = CustomerKyc(
            customer_id=message.customer_id,
            kyc_status=kyc_status_name(message.kyc_status),
            kyc_version=message.kyc_version,
            customer_since=(
                from_timestamp(message.create_time, "create_time")
                if message.HasField("create_time")
                else None
            ),
        )
        record_customer_kyc(lambda: app.joined_uow(connection), clock, kyc)

    def on_kyc_changed(event: ReceivedEvent[Any], connection: Connection) -> None:
        message: identity_events.CustomerKycChanged = event.message
        kyc = CustomerKyc(
            customer_id=message.customer_id,
            kyc_status=kyc_status_name(message.status),
            kyc_version=message.kyc_version,
            customer_since=None,  # kept from what is known; the change does not say
        )
        record_customer_kyc(lambda: app.joined_uow(connection), clock, kyc)

    def on_customer_erased(event: ReceivedEvent[Any], connection: Connection) -> None:
        message: identity_events.CustomerErased = event.message
        erase_customer_data(lambda: app.joined_uow(connection), clock, message.customer_id)

    return {
        identity_events.CustomerCreated: on_customer_created,
        identity_events.CustomerKycChanged: on_kyc_changed,
        identity_events.CustomerErased: on_customer_erased,
    }


def start_kyc_subscriber(app: Payments, settings: PaymentsSettings) -> EventSubscriber | None:
    if not settings.kyc_subscriber_enabled:
        return None
    try:
        subscriber = subscribe(
            topic=settings.kyc_topic or context_topic("identity"),
            subscription=settings.kyc_subscription,
            engine=app.engine,
            tables=tables.subscriber_tables,
            handlers=kyc_handlers(app),
        )
    except Exception:
        # Without it the gate still works: payments asks identity for unknown customers.
        _log.exception("KYC subscriber not started; identity will be asked instead")
        return None
    _log.info("KYC subscriber started", subscription=subscriber.subscription)
    return subscriber
