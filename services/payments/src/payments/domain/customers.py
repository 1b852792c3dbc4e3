"""What payments knows of a customer: its KYC status, from identity's events or answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from chassis.kernel.errors import FailedPrecondition

from payments.domain.events import CustomerDataErased
from payments.domain.model import Payment
from payments.domain.states import PaymentState

VERIFIED = "VERIFIED"
# An erased customer moves no more money: its personal data would come back with it.
ERASED = "ERASED"
# Above any version identity gives, so no later word of identity's undoes an erasure.
ERASED_VERSION = 2**62


# Identity took a VERIFIED customer back (a sanctions hit on it): its open payments wait.
CUSTOMER_UNDER_REVIEW = "CUSTOMER_UNDER_REVIEW"


def hold_for_customer_review(payment: Payment, now: datetime) -> bool:
    """A payment of a customer no longer VERIFIED, not yet given to the bank, waits for a
    reviewer (an outgoing one still CREATED does once its funds are held). True if held."""
    if payment.state not in (PaymentState.CREATED, PaymentState.FUNDS_HELD):
        return False
    payment.require_review(CUSTOMER_UNDER_REVIEW, now)
    return True


def check_approvable(payment: Payment, known: CustomerKyc | None) -> None:
    """A reviewer's approval moves money: only for a customer VERIFIED now.

    Whatever held the payment (fraud rules, a sanctions hit on its payee, its customer
    taken back from VERIFIED while it waited), approving it for a customer that identity
    no longer verifies would pay out past the KYC gate; the customer's own review in
    identity comes first.
    """
    if known is None or not known.verified:
        status = known.kyc_status if known is not None else "unknown here"
        raise FailedPrecondition(
            "CUSTOMER_NOT_VERIFIED",
            f"payment {payment.id} cannot be approved while its customer "
            f"{payment.customer_id} is not VERIFIED ({status}); the customer's review in "
            "identity comes first",
            metadata={"customer_id": payment.customer_id},
        )


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
