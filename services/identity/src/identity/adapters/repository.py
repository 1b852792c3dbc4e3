"""Repositories over one ORM session: the unit of work owns the transaction.

Queries name the table columns (``tables.x.c.y``): the domain classes are
mapped imperatively, so their class attributes are not typed as columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from chassis.db.data_keys import DataKeys
from chassis.kernel.uow import TracksAggregates
from chassis.pii import associated_data
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

# The personal fields of a customer: the domain attribute and the mapped attribute holding
# it sealed. The associated data names the field and the row (``customers.email:cus_1``).
PERSONAL_FIELDS = (("display_name", "sealed_display_name"), ("email", "sealed_email"))


def customer_field_place(field: str, customer_id: str) -> bytes:
    return associated_data("customers", field, customer_id)


class SqlCustomerRepository(TracksAggregates):
    """Customers, their name and e-mail sealed at rest with the customer's data key."""

    def __init__(self, session: Session, data_keys: DataKeys) -> None:
        super().__init__()
        self._session = session
        self._keys = data_keys

    def add(self, customer: Customer) -> None:
        wrapped = self._keys.ensure(self._session.connection(), [customer.id])[customer.id]
        for field, sealed in PERSONAL_FIELDS:
            value = self._keys.envelope.seal(
                wrapped, getattr(customer, field), customer_field_place(field, customer.id)
            )
            setattr(customer, sealed, value)
        self._session.add(self.track(customer))

    def get(self, customer_id: str, *, for_update: bool = False) -> Customer | None:
        customer = self._session.get(Customer, customer_id, with_for_update=for_update or None)
        if customer is None:
            return None
        self._open([customer])
        return self.track(customer)

    def list(self, after: str | None, limit: int, status: KycStatus | None) -> list[Customer]:
        query = select(Customer).order_by(customers.c.id).limit(limit)
        if after is not None:
            query = query.where(customers.c.id > after)
        if status is not None:
            query = query.where(customers.c.kyc_status == status)
        found = [*self._session.scalars(query)]
        self._open(found)
        return found

    def destroy_personal_data(self, customer: Customer) -> None:
        for _field, sealed in PERSONAL_FIELDS:
            setattr(customer, sealed, None)
        self._keys.destroy(self._session.connection(), customer.id)

    def _open(self, loaded: Sequence[Customer]) -> None:
        """Set the plain personal fields from the sealed ones (empty once erased)."""
        wrapped = self._keys.wrapped(self._session.connection(), [c.id for c in loaded])
        for customer in loaded:
            for field, sealed in PERSONAL_FIELDS:
                plain = self._keys.envelope.open(
                    wrapped.get(customer.id),
                    getattr(customer, sealed),
                    customer_field_place(field, customer.id),
                )
                setattr(customer, field, plain)


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
