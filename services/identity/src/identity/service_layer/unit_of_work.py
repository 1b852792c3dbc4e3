"""Identity's unit of work: an ORM session, its repositories, its events bound for the outbox."""

from __future__ import annotations

from collections.abc import Iterable

from chassis.db.uow import SessionUnitOfWork
from chassis.kernel.uow import EventSource
from sqlalchemy.orm import Session

from identity.adapters.repository import (
    ClientRepository,
    CustomerRepository,
    KycRequestRepository,
    SigningKeyRepository,
)


class IdentityUnitOfWork(SessionUnitOfWork):
    customers: CustomerRepository
    kyc_requests: KycRequestRepository
    clients: ClientRepository
    keys: SigningKeyRepository

    def _open_repositories(self, session: Session) -> None:
        self.customers = CustomerRepository(session)
        self.kyc_requests = KycRequestRepository(session)
        self.clients = ClientRepository(session)
        self.keys = SigningKeyRepository(session)

    def detach_all(self) -> None:
        """Keep what was read usable after the block (leaving it rolls back, which expires)."""
        self.session.expunge_all()

    def repositories(self) -> Iterable[EventSource]:
        return (self.customers,)
