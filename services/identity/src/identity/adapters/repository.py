"""Repositories over one ORM session: the unit of work owns the transaction.

Queries name the table columns (``tables.x.c.y``): the domain classes are
mapped imperatively, so their class attributes are not typed as columns.
"""

from __future__ import annotations

from datetime import datetime

from chassis.kernel.uow import TracksAggregates
from sqlalchemy import select
from sqlalchemy.orm import Session

from identity.adapters.tables import clients, customers, revoked_tokens, signing_keys
from identity.domain.model import (
    Customer,
    KycRequest,
    KycStatus,
    ServiceClient,
    SigningKey,
    TokenRevocation,
)


class SqlCustomerRepository(TracksAggregates):
    def __init__(self, session: Session) -> None:
        super().__init__()
        self._session = session

    def add(self, customer: Customer) -> None:
        self._session.add(self.track(customer))

    def get(self, customer_id: str, *, for_update: bool = False) -> Customer | None:
        customer = self._session.get(Customer, customer_id, with_for_update=for_update or None)
        return self.track(customer) if customer is not None else None

    def list(self, after: str | None, limit: int, status: KycStatus | None) -> list[Customer]:
        query = select(Customer).order_by(customers.c.id).limit(limit)
        if after is not None:
            query = query.where(customers.c.id > after)
        if status is not None:
            query = query.where(customers.c.kyc_status == status)
        return list(self._session.scalars(query))


class SqlKycRequestRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, request_id: str) -> KycRequest | None:
        return self._session.get(KycRequest, request_id)

    def add(self, request: KycRequest) -> None:
        self._session.add(request)


class SqlClientRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, client_id: str, *, for_update: bool = False) -> ServiceClient | None:
        return self._session.get(ServiceClient, client_id, with_for_update=for_update or None)

    def add(self, client: ServiceClient) -> None:
        self._session.add(client)

    def disabled_since(self, since: datetime | None) -> list[ServiceClient]:
        query = select(ServiceClient).where(clients.c.disabled_at.is_not(None))
        if since is not None:
            query = query.where(clients.c.disabled_at >= since)
        return list(self._session.scalars(query.order_by(clients.c.id)))


class SqlRevocationRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, token_id: str) -> TokenRevocation | None:
        return self._session.get(TokenRevocation, token_id)

    def add(self, revocation: TokenRevocation) -> None:
        self._session.add(revocation)

    def listed(self, since: datetime | None, now: datetime) -> list[TokenRevocation]:
        query = select(TokenRevocation).where(revoked_tokens.c.expire_at > now)
        if since is not None:
            query = query.where(revoked_tokens.c.revoked_at >= since)
        return list(self._session.scalars(query.order_by(revoked_tokens.c.revoked_at)))


class SqlSigningKeyRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def active(self, *, for_update: bool = False) -> SigningKey | None:
        query = select(SigningKey).where(signing_keys.c.active.is_(True))
        if for_update:
            query = query.with_for_update()
        return self._session.scalars(query).first()

    def by_request(self, request_id: str) -> SigningKey | None:
        query = select(SigningKey).where(signing_keys.c.request_id == request_id)
        return self._session.scalars(query).first()

    def retired_by(self, key: SigningKey) -> datetime | None:
        """When the key that signed before ``key`` stops being published (keys rotate in order)."""
        query = (
            select(signing_keys.c.retire_at)
            .where(signing_keys.c.created_at <= key.created_at, signing_keys.c.kid != key.kid)
            .order_by(signing_keys.c.created_at.desc())
            .limit(1)
        )
        return self._session.scalars(query).first()

    def published(self, now: datetime) -> list[SigningKey]:
        query = (
            select(SigningKey)
            .where(signing_keys.c.active.is_(True) | (signing_keys.c.retire_at > now))
            .order_by(signing_keys.c.active.desc(), signing_keys.c.created_at.desc())
        )
        return list(self._session.scalars(query))

    def add(self, key: SigningKey) -> None:
        # What the transaction changed before goes first (a key it retired is no longer
        # active); then the key is written now, so a second active key fails here (unique
        # index) and the transaction is retried, rather than at some later flush.
        self._session.flush()
        self._session.add(key)
        self._session.flush()
