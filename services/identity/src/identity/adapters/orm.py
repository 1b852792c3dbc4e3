"""Maps the plain domain classes onto the tables (SQLAlchemy 2 imperative mapping)."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import registry, relationship

from identity.adapters import tables
from identity.domain.model import (
    Customer,
    KycChange,
    KycRequest,
    ServiceClient,
    SigningKey,
    TokenRevocation,
)

mapper_registry = registry()
_lock = threading.Lock()
_started = False


def start_mappers() -> None:
    """Map once per process (idempotent)."""
    global _started
    with _lock:
        if _started:
            return
        mapper_registry.map_imperatively(KycChange, tables.kyc_changes)
        mapper_registry.map_imperatively(
            Customer,
            tables.customers,
            # The repository seals and opens the personal fields (``display_name``, ``email``
            # stay plain attributes of the domain object).
            properties={
                "sealed_display_name": tables.customers.c.display_name_sealed,
                "sealed_email": tables.customers.c.email_sealed,
                "sanctions": tables.customers.c.sanctions_screening,
                "history": relationship(
                    KycChange,
                    order_by=tables.kyc_changes.c.kyc_version,
                    lazy="selectin",
                    cascade="all, delete-orphan",
                ),
            },
        )
        mapper_registry.map_imperatively(KycRequest, tables.kyc_requests)
        mapper_registry.map_imperatively(ServiceClient, tables.clients)
        mapper_registry.map_imperatively(SigningKey, tables.signing_keys)
        mapper_registry.map_imperatively(TokenRevocation, tables.revoked_tokens)
        event.listen(Customer, "load", _on_customer_load)
        _started = True


def _on_customer_load(customer: Customer, _context: Any) -> None:
    # Loaded aggregates skip __init__: they start with no pending events.
    customer.events = []
