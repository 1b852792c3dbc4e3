"""What payments knows of a customer: its KYC status, from identity's events or answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from payments.domain.events import CustomerDataErased

VERIFIED = "VERIFIED"
# An erased customer moves no more money: its personal data would come back with it.
ERASED = "ERASED"
# Above any version identity gives, so no later word of identity's undoes an erasure.
ERASED_VERSION = 2**62


@dataclass(frozen=True, slots=True)
class CustomerKyc:
    customer_id: str
    # As identity names it: UNVERIFIED, PENDING_REVIEW, VERIFIED, REJECTED; or ERASED.
    kyc_status: str
    # Identity's version of the status: a newer version wins, whatever order events arrive in.
    kyc_version: int
    customer_since: datetime | None

    @property
    def verified(self) -> bool:
        return self.kyc_status == VERIFIED

    @classmethod
    def erased(cls, customer_id: str) -> CustomerKyc:
        """What is known of a customer once erased: for good, whatever identity said before."""
        return cls(customer_id, ERASED, ERASED_VERSION, None)


@dataclass(frozen=True, slots=True)
class CustomerStatus:
    """What a decision needs of a customer: its KYC status and since when it is one."""

    kyc_status: str
    customer_since: datetime | None

    @classmethod
    def of(cls, kyc: CustomerKyc) -> CustomerStatus:
        return cls(kyc.kyc_status, kyc.customer_since)


@dataclass
class CustomerErasure:
    """The erasure of a customer's personal data in payments (counterparties' account
    numbers and names): recorded as an event when something was erased."""

    customer_id: str
    occurred_at: datetime
    events: list[CustomerDataErased] = field(default_factory=list)

    def done(self, payment_count: int, key_destroyed: bool) -> None:
        # A second erasure finds nothing left: it is not recorded again.
        if payment_count or key_destroyed:
            self.events.append(
                CustomerDataErased(self.customer_id, payment_count, self.occurred_at)
            )

    def take_events(self) -> list[CustomerDataErased]:
        events, self.events = self.events, []
        return events
