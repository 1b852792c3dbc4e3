"""Deciding a new payment, and answering a request that was made before. Pure.

A new payout or collection is declined (the customer is not verified, a fraud
rule refuses it), held for a reviewer, or goes on to its hold (outgoing) or the
bank. A request whose id is known already gets that payment back, if it asks
for the same thing (AIP-155).
"""

from __future__ import annotations

from datetime import datetime

from chassis.kernel.errors import FailedPrecondition, IdempotencyKeyReused

from payments.domain.customers import VERIFIED, CustomerStatus
from payments.domain.fraud import Velocity, Verdict, assess
from payments.domain.ledger_plan import customer_account_id
from payments.domain.model import Payment, PaymentRequest
from payments.domain.policy import Policy
from payments.domain.sanctions import SanctionsScreening, apply_screening, screen_request
from payments.domain.states import PaymentState


def decide_payment(
    request: PaymentRequest,
    status: CustomerStatus,
    velocity: Velocity,
    policy: Policy,
    now: datetime,
    trace_context: str = "",
    screening: SanctionsScreening | None = None,
) -> Payment:
    """A new payment from its request: declined, held for review, or ready for its hold.

    ``trace_context``: the W3C traceparent of the call that asked, which the work
    done for the payment later joins. ``screening``: its counterparty's, screened when the
    request arrived (``sanctions.screen_request``); screened here when not given.
    """
    payment = Payment.create(
        request,
        fee=policy.fee_for(request),
        ledger_account_id=customer_account_id(request.customer_id, request.currency),
        now=now,
    )
    payment.trace_context = trace_context
    if status.kyc_status != VERIFIED:
        payment.decline("CUSTOMER_NOT_VERIFIED", now)
        return payment
    if screening is None:
        screening = screen_request(request, policy.sanctions, now)
    apply_screening(payment, screening)
    decision = assess(
        policy.fraud,
        amount=request.amount,
        currency=request.currency,
        customer_since=status.customer_since,
        now=now,
        velocity=velocity,
    )
    if decision.verdict is Verdict.DECLINE:
        payment.decline(decision.reason, now)
    elif decision.verdict is Verdict.REVIEW and not payment.review_required:
        payment.review_required = True
        payment.review_reason = decision.reason
    if payment.review_required and not payment.outgoing and payment.state is PaymentState.CREATED:
        payment.transition(PaymentState.IN_REVIEW, payment.review_reason, now)
    return payment


def declined(payment: Payment) -> FailedPrecondition:
    """What the caller of a declined payment's creation is told."""
    return FailedPrecondition(
        payment.reason,
        f"payment {payment.id} was declined: {payment.reason}; nothing was sent to the bank",
        metadata={"payment_id": payment.id, "state": PaymentState.DECLINED.name},
    )


def replay(existing: Payment, request: PaymentRequest) -> Payment:
    """The answer to a request whose id names ``existing``: the payment, if the request asks
    for the same thing; a declined one is refused again, as the first time."""
    if (
        existing.fingerprint != request.fingerprint()
        or existing.kind is not request.kind
        # Once the customer's personal data is erased no request matches it any more.
        or existing.counterparty != request.counterparty
    ):
        raise IdempotencyKeyReused("payment", request.payment_id)
    if existing.state is PaymentState.DECLINED and existing.reason != "REJECTED_IN_REVIEW":
        raise declined(existing)
    return existing
