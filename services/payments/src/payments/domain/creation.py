"""Deciding a new payment, and answering a request that was made before. Pure.

A new payout or collection is declined (the customer is not verified, a fraud
rule refuses it), held for a reviewer, or goes on to its hold (outgoing) or the
bank. A request whose id is known already gets that payment back, if it asks
for the same thing (AIP-155).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from chassis.kernel.errors import FailedPrecondition, IdempotencyKeyReused

from payments.domain.customers import VERIFIED, CustomerStatus
from payments.domain.fraud import Velocity, Verdict, assess
from payments.domain.ledger_plan import customer_account_id
from payments.domain.model import Payment, PaymentRequest
from payments.domain.monitoring import Activity, Alert, RecentPayment, monitor
from payments.domain.policy import Policy
from payments.domain.risk_score import RiskScore, combine, risk_features
from payments.domain.sanctions import SanctionsScreening, apply_screening, screen_request
from payments.domain.states import PaymentState

# The fraud model, as the decision sees it: its inputs (``risk_score.FEATURES``) -> its score.
Scorer = Callable[[Sequence[float]], RiskScore]


def decide_payment(
    request: PaymentRequest,
    status: CustomerStatus,
    velocity: Velocity,
    policy: Policy,
    now: datetime,
    trace_context: str = "",
    screening: SanctionsScreening | None = None,
    *,
    activity: Activity | None = None,
    counterparty_tag: str = "",
    scorer: Scorer | None = None,
) -> Payment:
    """A new payment from its request: declined, held for review, or ready for its hold.

    ``trace_context``: the W3C traceparent of the call that asked, which the work
    done for the payment later joins. ``screening``: its counterparty's, screened when the
    request arrived (``sanctions.screen_request``); screened here when not given.
    ``activity``: the customer's recent payments, for the monitoring rules and the
    model's features (None: monitoring off); ``counterparty_tag``: the request's
    counterparty as the activity names them; ``scorer``: the fraud model (None: no
    score). The rules, the score and the alerts raised are recorded in
    ``payment.risk_decision``; the alerts, to be stored with the payment, in
    ``payment.alerts``. A sanctions hit's review reason comes before any other; a
    decline wins over both.
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
    rules = policy.monitoring
    seen = activity if activity is not None else Activity()
    recent = RecentPayment(
        request.payment_id, request.kind, request.amount, request.currency, now, counterparty_tag
    )
    score = None
    if scorer is not None:
        score = scorer(risk_features(recent, status.customer_since, seen, rules.window, now))
    alerts: list[Alert] = []
    if activity is not None and rules.enabled:
        alerts = [
            Alert.raised(request.customer_id, request.payment_id, finding, now)
            for finding in monitor(rules, activity, recent, now)
        ]
    outcome = combine(
        decision.verdict,
        decision.reason,
        score,
        policy.score_thresholds,
        tuple((a.id, a.rule.name) for a in alerts),
        rules.hold_for_review,
    )
    payment.risk_decision = outcome
    # A declined payment moved nothing: it raises no alert.
    payment.alerts = alerts if outcome.verdict is not Verdict.DECLINE else []
    if outcome.verdict is Verdict.DECLINE:
        payment.decline(outcome.reason, now)
    elif outcome.verdict is Verdict.REVIEW and not payment.review_required:
        payment.review_required = True
        payment.review_reason = outcome.reason
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
