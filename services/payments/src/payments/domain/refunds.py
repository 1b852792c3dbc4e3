"""Refund arithmetic: the refunds of a collection never add up to more than it."""

from __future__ import annotations

from datetime import datetime

from chassis.kernel.errors import FailedPrecondition

from payments.domain.customers import VERIFIED, CustomerStatus
from payments.domain.model import Payment, PaymentRequest, not_refundable
from payments.domain.states import PaymentKind, PaymentState


def refundable(original: Payment, refunded: int) -> int:
    """What is left to refund of ``original`` when ``refunded`` is already live."""
    return max(0, original.amount - refunded)


def check_refund(original: Payment, amount: int, refunded: int) -> None:
    """Refuse a refund of ``amount`` unless ``original`` is a settled collection with room left."""
    if original.kind is not PaymentKind.COLLECTION:
        raise not_refundable(original, "only collections are refunded")
    if original.state is not PaymentState.SETTLED:
        raise not_refundable(original, f"it is {original.state.name}, not SETTLED")
    left = refundable(original, refunded)
    if amount > left:
        raise FailedPrecondition(
            "REFUND_EXCEEDS_PAYMENT",
            f"a refund of {amount} exceeds the {left} left to refund of payment {original.id} "
            f"({original.amount} collected, {refunded} refunded)",
            metadata={
                "payment_id": original.id,
                "refundable": str(left),
                "requested": str(amount),
            },
        )


def decide_refund(
    request: PaymentRequest,
    original: Payment,
    refunded: int,
    status: CustomerStatus,
    now: datetime,
    trace_context: str = "",
) -> Payment:
    """A refund of ``original`` (of which ``refunded`` is live already), or its refusal.

    Declined unless the customer is verified; refunds are not assessed by the fraud
    rules: they send money back where it came from.
    """
    check_refund(original, request.amount, refunded)
    refund = Payment.create(request, fee=0, ledger_account_id=original.ledger_account_id, now=now)
    refund.trace_context = trace_context
    if status.kyc_status != VERIFIED:
        refund.decline("CUSTOMER_NOT_VERIFIED", now)
    return refund
