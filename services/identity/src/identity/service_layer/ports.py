"""What identity's use cases need from the outside, as protocols the adapters implement.

Storage (the repositories a unit of work opens): ``identity.adapters.repository``
on SQL, ``identity.adapters.memory`` in memory. Cryptography:
``identity.adapters.crypto``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from identity.domain.events import IdentityEvent
from identity.domain.model import (
    Customer,
    KycRequest,
    KycStatus,
    ServiceClient,
    SigningKey,
    TokenRevocation,
)

# What every repository here promises: what ``get``, ``active`` and the like return
# is the transaction's own object for that row (the same one each time), and what a
# use case changes on it is written when the unit of work commits. Queries see the
# transaction's own changes. ``for_update`` locks the row until the transaction ends.
# Adding a row whose key (or unique value) is taken fails, at the latest at commit,
# with an error the unit of work calls a lost race.


class CustomerRepository(Protocol):
    def take_events(self) -> list[IdentityEvent]:
        """The events of the customers added or read with ``get`` (for the unit of work)."""
        ...

    def add(self, customer: Customer) -> None: ...

    def get(self, customer_id: str, *, for_update: bool = False) -> Customer | None: ...

    def list(self, after: str | None, limit: int, status: KycStatus | None) -> list[Customer]:
        """Customers by id after ``after``, at most ``limit``, only of ``status`` if given."""
        ...

    def destroy_personal_data(self, customer: Customer) -> None:
        """Make the customer's stored personal data unreadable for good (its data key goes):
        what an erased customer (``Customer.erase``) asks of storage."""
        ...


class KycRequestRepository(Protocol):
    def get(self, request_id: str) -> KycRequest | None: ...

    def add(self, request: KycRequest) -> None: ...


class ClientRepository(Protocol):
    def get(self, client_id: str, *, for_update: bool = False) -> ServiceClient | None: ...

    def add(self, client: ServiceClient) -> None: ...

    def disabled_since(self, since: datetime | None) -> list[ServiceClient]:
        """The clients disabled at or after ``since`` (all disabled ones if None)."""
        ...


class RevocationRepository(Protocol):
    def get(self, token_id: str) -> TokenRevocation | None: ...

    def add(self, revocation: TokenRevocation) -> None: ...

    def listed(self, since: datetime | None, now: datetime) -> list[TokenRevocation]:
        """Revocations made at or after ``since`` (all if None) still listed at ``now``."""
        ...


class SigningKeyRepository(Protocol):
    """Signing keys; one is active at a time, and a rotation's request id names one key."""

    def active(self, *, for_update: bool = False) -> SigningKey | None: ...

    def by_request(self, request_id: str) -> SigningKey | None: ...

    def retired_by(self, key: SigningKey) -> datetime | None:
        """When the key that signed before ``key`` stops being published (keys rotate in order)."""
        ...

    def published(self, now: datetime) -> list[SigningKey]:
        """The active key, then the retired ones still published at ``now``, newest first."""
        ...

    def add(self, key: SigningKey) -> None:
        """Written at once, after what the transaction changed before (a key it retired): a
        second active key or a second key for one rotation request fails here."""
        ...


class SecretHasher(Protocol):
    def new_secret(self) -> str: ...

    def hash(self, secret: str) -> str: ...

    def verify(self, secret_hash: str | None, secret: str) -> bool:
        """True if ``secret`` matches; ``None`` (no such client) costs the same and is False."""
        ...


class RateLimiter(Protocol):
    def take(self, key: str) -> float:
        """0 if a call for ``key`` may go ahead now, else the seconds to wait."""
        ...


class KeyStore(Protocol):
    def new_signing_key(self, now: datetime, request_id: str = "") -> SigningKey: ...

    def sign(self, claims: dict[str, Any], key: SigningKey) -> str: ...
