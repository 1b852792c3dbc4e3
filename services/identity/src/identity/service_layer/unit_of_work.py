"""Identity's unit of work: an ORM session, its repositories, its events bound for the outbox."""

from __future__ import annotations

from typing import Any

from chassis.db.uow import EventMapper, UnitOfWork
from chassis.events.writer import OutboxWriter
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from identity.adapters.repository import (
    ClientRepository,
    CustomerRepository,
    KycRequestRepository,
    SigningKeyRepository,
)


class IdentityUnitOfWork(UnitOfWork):
    customers: CustomerRepository
    kyc_requests: KycRequestRepository
    clients: ClientRepository
    keys: SigningKeyRepository

    def __init__(
        self, engine: Engine, outbox: OutboxWriter | None, event_mapper: EventMapper | None
    ) -> None:
        super().__init__(engine, outbox, event_mapper)

    def _open_repositories(self, session: Session) -> None:
        self.customers = CustomerRepository(session)
        self.kyc_requests = KycRequestRepository(session)
        self.clients = ClientRepository(session)
        self.keys = SigningKeyRepository(session)

    def detach_all(self) -> None:
        """Keep what was read usable after the block (leaving it rolls back, which expires)."""
        self.session.expunge_all()

    def _aggregate_events(self) -> list[Any]:
        events: list[Any] = []
        for customer in self.customers.seen:
            events.extend(customer.events)
            customer.events = []
        return events
