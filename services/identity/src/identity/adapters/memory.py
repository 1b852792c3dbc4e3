"""Identity in memory: a fake of its database, repositories and unit of work, without I/O.

For fast use-case tests and simulations. It keeps the SQL repositories' contract
(``identity.service_layer.ports``): within a transaction one object per row,
written back at commit (and before a query, as the ORM's autoflush); the unique
indexes of the tables (one active signing key, one key per rotation request)
refuse a second row as a lost race; one transaction at a time, and one that does
not commit leaves nothing behind (``chassis.kernel.memory``). Committed events
are kept in ``MemoryIdentityDatabase.events``, in commit order.
"""

from __future__ import annotations

from copy import deepcopy
from datetime import datetime

from chassis.kernel.memory import IdentityMap, MemoryDatabase, MemoryTable, MemoryUnitOfWork
from chassis.kernel.uow import TracksAggregates

from identity.domain.model import (
    Customer,
    KycRequest,
    KycStatus,
    ServiceClient,
    SigningKey,
    TokenRevocation,
)
from identity.service_layer.unit_of_work import IdentityUnitOfWork


def _stored_customer(customer: Customer) -> Customer:
    # Events belong to the object a use case holds, never to a stored row or a copy read.
    stored = deepcopy(customer)
    stored.events = []
    return stored


class MemoryIdentityDatabase(MemoryDatabase):
    """What identity's tables hold."""

    def __init__(self) -> None:
        super().__init__()
        self.customers: MemoryTable[str, Customer] = MemoryTable(self, copy=_stored_customer)
        self.kyc_requests: MemoryTable[str, KycRequest] = MemoryTable(self)
        self.clients: MemoryTable[str, ServiceClient] = MemoryTable(self)
        self.revocations: MemoryTable[str, TokenRevocation] = MemoryTable(self)
        self.signing_keys: MemoryTable[str, SigningKey] = MemoryTable(
            self,
            unique={
                "active": lambda key: True if key.active else None,
                "request": lambda key: key.request_id or None,
            },
        )

    def uow(self) -> MemoryIdentityUnitOfWork:
        """A new unit of work on this database (the factory use cases are given)."""
        return MemoryIdentityUnitOfWork(self)


class MemoryCustomerRepository(TracksAggregates):
    def __init__(self, table: MemoryTable[str, Customer]) -> None:
        super().__init__()
        self.rows = IdentityMap(table, key=lambda customer: customer.id)

    def add(self, customer: Customer) -> None:
        self.rows.add(self.track(customer))

    def get(self, customer_id: str, *, for_update: bool = False) -> Customer | None:
        customer = self.rows.get(customer_id)
        return self.track(customer) if customer is not None else None

    def list(self, after: str | None, limit: int, status: KycStatus | None) -> list[Customer]:
        return self.rows.select(
            lambda c: (
                (after is None or c.id > after) and (status is None or c.kyc_status is status)
            ),
            order_by=lambda c: c.id,
            limit=limit,
        )

    def destroy_personal_data(self, customer: Customer) -> None:
        # Nothing kept beside the row: the erased customer's blank fields are written at commit.
        pass


class MemoryKycRequestRepository:
    def __init__(self, table: MemoryTable[str, KycRequest]) -> None:
        self.rows = IdentityMap(table, key=lambda request: request.request_id)

    def get(self, request_id: str) -> KycRequest | None:
        return self.rows.get(request_id)

    def add(self, request: KycRequest) -> None:
        self.rows.add(request)


class MemoryClientRepository:
    def __init__(self, table: MemoryTable[str, ServiceClient]) -> None:
        self.rows = IdentityMap(table, key=lambda client: client.id)

    def get(self, client_id: str, *, for_update: bool = False) -> ServiceClient | None:
        return self.rows.get(client_id)

    def add(self, client: ServiceClient) -> None:
        self.rows.add(client)

    def disabled_since(self, since: datetime | None) -> list[ServiceClient]:
        return self.rows.select(
            lambda c: c.disabled_at is not None and (since is None or c.disabled_at >= since),
            order_by=lambda c: c.id,
        )


class MemoryRevocationRepository:
    def __init__(self, table: MemoryTable[str, TokenRevocation]) -> None:
        self.rows = IdentityMap(table, key=lambda revocation: revocation.token_id)

    def get(self, token_id: str) -> TokenRevocation | None:
        return self.rows.get(token_id)

    def add(self, revocation: TokenRevocation) -> None:
        self.rows.add(revocation)

    def listed(self, since: datetime | None, now: datetime) -> list[TokenRevocation]:
        return self.rows.select(
            lambda r: r.expire_at > now and (since is None or r.revoked_at >= since),
            order_by=lambda r: r.revoked_at,
        )


class MemorySigningKeyRepository:
    def __init__(self, table: MemoryTable[str, SigningKey]) -> None:
        self.rows = IdentityMap(table, key=lambda key: key.kid)

    def active(self, *, for_update: bool = False) -> SigningKey | None:
        return self.rows.by("active", True)

    def by_request(self, request_id: str) -> SigningKey | None:
        if not request_id:
            # The SQL query would match any key made without a request: keep that answer.
            found = self.rows.select(lambda key: key.request_id == "", limit=1)
            return found[0] if found else None
        return self.rows.by("request", request_id)

    def retired_by(self, key: SigningKey) -> datetime | None:
        earlier = self.rows.select(
            lambda other: other.created_at <= key.created_at and other.kid != key.kid,
            order_by=lambda other: other.created_at,
        )
        return earlier[-1].retire_at if earlier else None

    def published(self, now: datetime) -> list[SigningKey]:
        keys = self.rows.select(lambda key: key.published(now))
        return sorted(keys, key=lambda key: (key.active, key.created_at), reverse=True)

    def add(self, key: SigningKey) -> None:
        # Written at once, after the transaction's earlier changes (a key it retired).
        self.rows.add(key)
        self.rows.flush()


class MemoryIdentityUnitOfWork(MemoryUnitOfWork[MemoryIdentityDatabase], IdentityUnitOfWork):
    def _open_repositories(self, database: MemoryIdentityDatabase) -> None:
        customers = MemoryCustomerRepository(database.customers)
        kyc_requests = MemoryKycRequestRepository(database.kyc_requests)
        clients = MemoryClientRepository(database.clients)
        signing_keys = MemorySigningKeyRepository(database.signing_keys)
        revocations = MemoryRevocationRepository(database.revocations)
        self.customers, self.kyc_requests = customers, kyc_requests
        self.clients, self.signing_keys = clients, signing_keys
        self.revocations = revocations
        self._flushes = [
            customers.rows.flush,
            kyc_requests.rows.flush,
            clients.rows.flush,
            signing_keys.rows.flush,
            revocations.rows.flush,
        ]

    def _flush(self) -> None:
        for flush in self._flushes:
            flush()
