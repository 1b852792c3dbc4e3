"""Identity's unit of work as its use cases see it: one transaction over its repositories."""

from __future__ import annotations

from collections.abc import Iterable

from chassis.kernel.uow import EventSource, UnitOfWork

from identity.service_layer.ports import (
    ClientRepository,
    CustomerRepository,
    KycRequestRepository,
    RevocationRepository,
    SigningKeyRepository,
)


class IdentityUnitOfWork(UnitOfWork):
    """Each repository is named for what it holds. What a block read stays usable after it,
    committed or not (a view, a client, a key returned from a read-only block).

    The concrete ones: ``identity.adapters.unit_of_work`` (SQL), ``identity.adapters.memory``.
    """

    customers: CustomerRepository
    kyc_requests: KycRequestRepository
    clients: ClientRepository
    signing_keys: SigningKeyRepository
    revocations: RevocationRepository

    def repositories(self) -> Iterable[EventSource]:
        # Only customers record events.
        return (self.customers,)
