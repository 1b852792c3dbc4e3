"""Identity's aggregates as plain classes; the ORM maps them from outside (adapters/orm.py).

- ``Customer``: profile plus the KYC lifecycle
  UNVERIFIED -> PENDING_REVIEW -> VERIFIED | REJECTED (REJECTED may be submitted
  again). Every change gets the next ``kyc_version``, is kept in the history
  with its reason, and is recorded as an event.
- ``ServiceClient``: a machine identity with the scopes it may ask for and the
  hash of its secret.
- ``TokenRevocation``: a token refused before its expiry, by its id (``jti``).
- ``SigningKey``: one token signing key; its private half stays encrypted (the
  domain never sees it). A key is published while active and, once retired,
  until every token it signed has expired. Retiring it erases the private half:
  it will never sign again, and key material kept is key material that can leak.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from chassis.kernel.audit import Requester, flat, requester_from
from chassis.kernel.errors import FailedPrecondition, PermissionDenied
from screening.matcher import Screener

from identity.domain.events import (
    CustomerCreated,
    CustomerErased,
    CustomerKycChanged,
    IdentityEvent,
)
from identity.domain.screening import (
    SANCTIONS_MATCH,
    SCREENING_ACTOR,
    CustomerScreening,
    Decision,
    clearance_needs_reason,
    screened,
    successor,
)


class KycStatus(enum.Enum):
    UNVERIFIED = 1
    PENDING_REVIEW = 2
    VERIFIED = 3
    REJECTED = 4


class KycDecision(enum.Enum):
    APPROVE = 1
    REJECT = 2


# Which status a customer may move to from each status.
_TRANSITIONS: dict[KycStatus, frozenset[KycStatus]] = {
    KycStatus.UNVERIFIED: frozenset({KycStatus.PENDING_REVIEW}),
    KycStatus.PENDING_REVIEW: frozenset({KycStatus.VERIFIED, KycStatus.REJECTED}),
    KycStatus.REJECTED: frozenset({KycStatus.PENDING_REVIEW}),
    KycStatus.VERIFIED: frozenset(),
}


def fingerprint(*parts: Any) -> str:
    """A digest of a request's content, to tell a replay from a reused key."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class CustomerSpec:
    id: str
    display_name: str
    email: str


class KycChange:
    def __init__(
        self,
        customer_id: str,
        kyc_version: int,
        previous_status: KycStatus,
        status: KycStatus,
        reason: str,
        actor: str,
        changed_at: datetime,
        changed_by: Requester | None = None,
    ) -> None:
        self.customer_id = customer_id
        self.kyc_version = kyc_version
        self.previous_status = previous_status
        self.status = status
        self.reason = reason
        self.actor = actor
        self.changed_at = changed_at
        # Who asked, flat as stored (``changed_by``).
        self.changed_by_client, self.changed_by_customer, self.changed_request_id = flat(changed_by)

    @property
    def changed_by(self) -> Requester | None:
        return requester_from(
            self.changed_by_client, self.changed_by_customer, self.changed_request_id
        )


@dataclass(frozen=True, slots=True)
class KycChangeView:
    kyc_version: int
    previous_status: KycStatus
    status: KycStatus
    reason: str
    actor: str
    changed_at: datetime
    changed_by: Requester | None = None


@dataclass(frozen=True, slots=True)
class CustomerView:
    """A customer as of one KYC version: what use cases return, detached from storage."""

    id: str
    display_name: str
    email: str
    kyc_status: KycStatus
    kyc_reason: str
    kyc_version: int
    kyc_updated_at: datetime
    history: tuple[KycChangeView, ...]
    created_at: datetime
    created_by: Requester | None = None
    erased_at: datetime | None = None
    sanctions: CustomerScreening | None = None


class Customer:
    events: list[IdentityEvent]

    def __init__(
        self,
        id: str,
        display_name: str,
        email: str,
        created_at: datetime,
        created_by: Requester | None = None,
    ) -> None:
        self.id = id
        self.display_name = display_name
        self.email = email
        self.created_at = created_at
        # Set once the personal data (name, e-mail) is erased; it never comes back.
        self.erased_at: datetime | None = None
        self.kyc_status = KycStatus.UNVERIFIED
        self.kyc_reason = ""
        self.kyc_version = 0
        self.kyc_updated_at = created_at
        self.history: list[KycChange] = []
        self.events = []
        # The latest sanctions screening of the name (``domain.screening``); None: never.
        self.sanctions: CustomerScreening | None = None
        # Who asked, flat as stored (``created_by``).
        self.created_by_client, self.created_by_customer, self.created_request_id = flat(created_by)

    @property
    def created_by(self) -> Requester | None:
        return requester_from(
            self.created_by_client, self.created_by_customer, self.created_request_id
        )

    def take_events(self) -> list[IdentityEvent]:
        events, self.events = self.events, []
        return events

    @classmethod
    def create(
        cls, spec: CustomerSpec, now: datetime, requester: Requester | None = None
    ) -> Customer:
        customer = cls(spec.id, spec.display_name, spec.email, now, requester)
        customer.events.append(CustomerCreated(customer.id, now))
        return customer

    def matches(self, spec: CustomerSpec) -> bool:
        """Whether ``spec`` asks for this customer as it was created (a replay)."""
        return (self.id, self.display_name, self.email) == (
            spec.id,
            spec.display_name,
            spec.email,
        )

    def erase(self, actor: str, now: datetime) -> bool:
        """Forget the personal data; True the first time (then it records ``CustomerErased``)."""
        if self.erased_at is not None:
            return False
        self.display_name = ""
        self.email = ""
        self.erased_at = now
        self.events.append(CustomerErased(self.id, actor, now))
        return True

    def submit_for_review(
        self, actor: str, now: datetime, requester: Requester | None = None
    ) -> KycChange:
        return self._change(KycStatus.PENDING_REVIEW, "", actor, now, requester)

    def review(
        self,
        decision: KycDecision,
        reason: str,
        actor: str,
        now: datetime,
        requester: Requester | None = None,
    ) -> KycChange:
        target = KycStatus.VERIFIED if decision is KycDecision.APPROVE else KycStatus.REJECTED
        if self.kyc_status is not KycStatus.PENDING_REVIEW:
            raise invalid_transition(self, target)
        if self.sanctions is not None and self.sanctions.open_hit:
            if decision is KycDecision.APPROVE and not reason.strip():
                raise clearance_needs_reason(self.id)
            verdict = Decision.CLEARED if decision is KycDecision.APPROVE else Decision.CONFIRMED
            self.sanctions = self.sanctions.decided(verdict, requester, reason)
        return self._change(target, reason, actor, now, requester)

    def screen(self, screener: Screener | None, now: datetime) -> None:
        """Screen the name (at KYC submission); what is recorded: ``domain.screening``."""
        if screener is not None:
            self.sanctions = successor(self.sanctions, screened(self.display_name, screener, now))

    def rescreen(self, screener: Screener, now: datetime) -> bool:
        """Screen again with a new list version (PENDING_REVIEW and VERIFIED customers); a new
        hit on a VERIFIED one takes it back to PENDING_REVIEW. True when something changed."""
        if self.kyc_status not in (KycStatus.PENDING_REVIEW, KycStatus.VERIFIED):
            return False
        if self.erased_at is not None:
            return False
        if self.sanctions is not None and self.sanctions.list_version == screener.version:
            return False
        self.screen(screener, now)
        if self.kyc_status is KycStatus.VERIFIED and self.sanctions and self.sanctions.open_hit:
            self._change(
                KycStatus.PENDING_REVIEW, SANCTIONS_MATCH, SCREENING_ACTOR, now, allowed=True
            )
        return True

    def _change(
        self,
        target: KycStatus,
        reason: str,
        actor: str,
        now: datetime,
        requester: Requester | None = None,
        *,
        allowed: bool = False,
    ) -> KycChange:
        """``allowed``: a change outside the table that the domain itself makes (a sanctions
        hit takes a VERIFIED customer back to review)."""
        if not allowed and target not in _TRANSITIONS[self.kyc_status]:
            raise invalid_transition(self, target)
        # A customer's history never runs backwards, whatever the clocks of several processes.
        if now < self.kyc_updated_at:
            now = self.kyc_updated_at
        change = KycChange(
            self.id, self.kyc_version + 1, self.kyc_status, target, reason, actor, now, requester
        )
        self.history.append(change)
        self.kyc_status = target
        self.kyc_reason = reason
        self.kyc_version = change.kyc_version
        self.kyc_updated_at = now
        self.events.append(
            CustomerKycChanged(
                self.id,
                change.previous_status.name,
                target.name,
                reason,
                change.kyc_version,
                actor,
                now,
            )
        )
        return change

    def view(self, as_of_version: int | None = None) -> CustomerView:
        """The customer now, or right after KYC change ``as_of_version`` (for replays)."""
        history = sorted(self.history, key=lambda c: c.kyc_version)
        if as_of_version is not None:
            history = [c for c in history if c.kyc_version <= as_of_version]
        last = history[-1] if history else None
        return CustomerView(
            id=self.id,
            display_name=self.display_name,
            email=self.email,
            kyc_status=last.status if last else KycStatus.UNVERIFIED,
            kyc_reason=last.reason if last else "",
            kyc_version=last.kyc_version if last else 0,
            kyc_updated_at=last.changed_at if last else self.created_at,
            history=tuple(
                KycChangeView(
                    c.kyc_version,
                    c.previous_status,
                    c.status,
                    c.reason,
                    c.actor,
                    c.changed_at,
                    c.changed_by,
                )
                for c in history
            ),
            created_at=self.created_at,
            created_by=self.created_by,
            erased_at=self.erased_at,
            sanctions=self.sanctions,
        )


def invalid_transition(customer: Customer, target: KycStatus) -> FailedPrecondition:
    return FailedPrecondition(
        "INVALID_KYC_TRANSITION",
        f"customer {customer.id} is {customer.kyc_status.name}; it cannot become {target.name}",
        metadata={"id": customer.id, "kyc_status": customer.kyc_status.name},
    )


class KycRequest:
    """The outcome of one KYC request, kept so that its id replays the same answer (AIP-155)."""

    def __init__(
        self,
        request_id: str,
        customer_id: str,
        fingerprint: str,
        created_at: datetime,
        kyc_version: int | None = None,
        error_reason: str = "",
        error_message: str = "",
    ) -> None:
        self.request_id = request_id
        self.customer_id = customer_id
        self.fingerprint = fingerprint
        self.created_at = created_at
        self.kyc_version = kyc_version
        self.error_reason = error_reason
        self.error_message = error_message

    def replay_error(self) -> FailedPrecondition | None:
        if not self.error_reason:
            return None
        return FailedPrecondition(
            self.error_reason,
            self.error_message,
            metadata={"id": self.customer_id, "request_id": self.request_id, "replayed": "true"},
        )


@dataclass(frozen=True, slots=True)
class ClientSpec:
    id: str
    display_name: str
    allowed_scopes: tuple[str, ...]

    def fingerprint(self) -> str:
        return fingerprint("client", self.id, self.display_name, sorted(set(self.allowed_scopes)))


class ServiceClient:
    def __init__(
        self,
        id: str,
        display_name: str,
        allowed_scopes: tuple[str, ...],
        secret_hash: str,
        created_at: datetime,
        created_by: Requester | None = None,
    ) -> None:
        self.id = id
        self.display_name = display_name
        self.allowed_scopes = tuple(sorted(set(allowed_scopes)))
        self.secret_hash = secret_hash
        self.created_at = created_at
        self.disabled_at: datetime | None = None
        self.fingerprint = ClientSpec(id, display_name, self.allowed_scopes).fingerprint()
        # Who registered and who disabled it, flat as stored (``created_by``, ``disabled_by``).
        self.created_by_client, self.created_by_customer, self.created_request_id = flat(created_by)
        self.disabled_by_client, self.disabled_by_customer, self.disabled_request_id = flat(None)

    @property
    def created_by(self) -> Requester | None:
        return requester_from(
            self.created_by_client, self.created_by_customer, self.created_request_id
        )

    @property
    def disabled_by(self) -> Requester | None:
        return requester_from(
            self.disabled_by_client, self.disabled_by_customer, self.disabled_request_id
        )

    def __repr__(self) -> str:  # never the hash
        return f"ServiceClient({self.id!r})"

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None

    def disable(self, now: datetime, requester: Requester | None = None) -> None:
        if self.disabled_at is None:
            self.disabled_at = now
            self.disabled_by_client, self.disabled_by_customer, self.disabled_request_id = flat(
                requester
            )

    def grant(self, requested: Iterable[str]) -> tuple[str, ...]:
        """The scopes a token gets: those asked for (all allowed ones if none), each allowed."""
        return grant(requested, self.allowed_scopes, "client " + self.id)


def customer_grant(
    requested: Iterable[str], customer_scopes: Iterable[str], client: ServiceClient
) -> tuple[str, ...]:
    """A customer token's scopes: at most those both allowed to customers and to the client
    acting for the customer (a client cannot reach further through a customer token)."""
    allowed = set(customer_scopes) & set(client.allowed_scopes)
    return grant(requested, allowed, f"a customer token of client {client.id}")


def grant(requested: Iterable[str], allowed: Iterable[str], holder: str) -> tuple[str, ...]:
    wanted = set(requested)
    allowed_set = set(allowed)
    if not wanted:
        return tuple(sorted(allowed_set))
    refused = sorted(wanted - allowed_set)
    if refused:
        raise PermissionDenied(
            "SCOPE_NOT_ALLOWED",
            f"{holder} may not have the scopes: {' '.join(refused)}",
            metadata={"scopes": " ".join(refused)},
        )
    return tuple(sorted(wanted))


class SigningKey:
    def __init__(
        self,
        kid: str,
        public_jwk: dict[str, str],
        encrypted_private_key: bytes,
        created_at: datetime,
        request_id: str = "",
    ) -> None:
        self.kid = kid
        self.public_jwk = public_jwk
        self.encrypted_private_key = encrypted_private_key
        self.created_at = created_at
        self.request_id = request_id
        self.active = True
        self.retire_at: datetime | None = None

    def __repr__(self) -> str:  # never the key material
        return f"SigningKey({self.kid!r}, active={self.active})"

    def published(self, now: datetime) -> bool:
        return self.active or (self.retire_at is not None and self.retire_at > now)

    def retire(self, now: datetime, token_ttl: timedelta, margin: timedelta) -> None:
        """Stop signing; stay published until the last token this key signed has expired.

        The (encrypted) private half is erased now: verifying needs only the public half.
        """
        self.active = False
        self.retire_at = now + token_ttl + margin
        self.encrypted_private_key = b""


class TokenRevocation:
    """A token refused everywhere before its expiry; listed until ``expire_at``, when no token
    issued before the revocation can still be valid."""

    def __init__(self, token_id: str, revoked_at: datetime, expire_at: datetime) -> None:
        self.token_id = token_id
        self.revoked_at = revoked_at
        self.expire_at = expire_at

    def __repr__(self) -> str:
        return f"TokenRevocation({self.token_id!r})"


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    """What identity puts in the tokens it issues."""

    issuer: str
    # The services a token may be for; each token names one (its `aud`).
    audiences: tuple[str, ...]
    ttl: timedelta
    # The scopes a customer token may carry (read-only ones, by default).
    customer_scopes: tuple[str, ...]
