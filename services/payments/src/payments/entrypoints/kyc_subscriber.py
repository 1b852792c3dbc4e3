"""Payments' projection of customers' KYC status, fed by identity's events.

Runs on the chassis subscriber (``subscribe``): each event is applied in the same
transaction as its inbox row (so a redelivery has no second effect), and the
projection keeps the newest ``kyc_version`` whatever order events arrive in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog
from astra.identity.v1 import events_pb2 as identity_events
from chassis.events.clients import context_topic
from chassis.events.decoding import ReceivedEvent
from chassis.events.subscriber import EventSubscriber, subscribe
from sqlalchemy import Connection

from payments.adapters import tables
from payments.adapters.identity_client import customer_kyc, kyc_status_name
from payments.adapters.repository import PaymentsRepository
from payments.bootstrap import Payments
from payments.config import PaymentsSettings
from payments.domain.customers import CustomerKyc

_log = structlog.get_logger("payments.kyc")


def on_customer_created(event: ReceivedEvent[Any], connection: Connection) -> None:
    message: identity_events.CustomerCreated = event.message
    PaymentsRepository(connection).upsert_customer(
        customer_kyc(message.customer), datetime.now(UTC)
    )


def on_kyc_changed(event: ReceivedEvent[Any], connection: Connection) -> None:
    message: identity_events.CustomerKycChanged = event.message
    kyc = CustomerKyc(
        customer_id=message.customer_id,
        kyc_status=kyc_status_name(message.status),
        kyc_version=message.kyc_version,
        customer_since=None,  # kept from what is known; the change does not say
    )
    PaymentsRepository(connection).upsert_customer(kyc, datetime.now(UTC))


HANDLERS: dict[Any, Any] = {
    identity_events.CustomerCreated: on_customer_created,
    identity_events.CustomerKycChanged: on_kyc_changed,
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
            handlers=HANDLERS,
        )
    except Exception:
        # Without it the gate still works: payments asks identity for unknown customers.
        _log.exception("KYC subscriber not started; identity will be asked instead")
        return None
    _log.info("KYC subscriber started", subscription=subscriber.subscription)
    return subscriber
