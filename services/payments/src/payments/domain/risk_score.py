"""The learned fraud score: what the model is shown, and what its score decides. Pure.

``risk_features`` turns a payment and its customer's recent activity into the
model's inputs; the generator of the training set goes through the same
function, so the model sees in production what it learned on. The model
itself (a LightGBM booster) sits behind ``service_layer.ports.FraudModel``;
its score (a probability of fraud) and each feature's contribution come back as
a ``RiskScore``. ``ScoreThresholds`` decide: at or above ``decline`` the payment
is declined (RISK_SCORE_DECLINE), at or above ``review`` it waits for a
reviewer (RISK_SCORE_REVIEW), below it goes on, beside the rules' verdict (the
stricter of the two wins; ``RiskDecision`` keeps both and why).

Amounts are shown to the model in major units (log10), so one model serves
every currency; a real deployment would convert to one currency first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from chassis.kernel.money import currency as currency_info

from payments.domain.fraud import Verdict
from payments.domain.monitoring import Activity, RecentPayment
from payments.domain.states import PaymentKind

# The model's inputs, in order. Changing them needs a new model (the artifact names them,
# and payments refuses to start with an artifact whose features differ).
FEATURES: tuple[str, ...] = (
    "amount_log10",
    "is_payout",
    "customer_age_days",
    "recent_count",
    "recent_amount_log10",
    "hour_of_day",
    "new_counterparty",
    "new_counterparties",
    "collected_share",
)
TOP_CONTRIBUTIONS = 3
# Cap of the age feature: beyond a few years age tells the model nothing more.
_MAX_AGE_DAYS = 3650.0
_SHARE_CAP = 10.0


def major_log10(amount: int, code: str) -> float:
    """log10 of 1 + the amount in major units of its currency."""
    return math.log10(1 + amount / 10 ** currency_info(code).exponent)


def risk_features(
    payment: RecentPayment,
    customer_since: datetime | None,
    activity: Activity,
    window: timedelta,
    now: datetime,
) -> tuple[float, ...]:
    """The model's inputs for ``payment`` (not in ``activity`` yet), in ``FEATURES`` order.

    ``window``: how far back the activity features look (the monitoring window).
    """
    since = now - window
    recent = [p for p in activity.recent if p.created_at >= since]
    same_currency = [p for p in recent if p.currency == payment.currency]
    age = (now - customer_since).total_seconds() / 86_400 if customer_since else 0.0
    known = activity.known_counterparties
    new_tags = {
        p.counterparty
        for p in recent
        if p.kind is PaymentKind.PAYOUT and p.counterparty and p.counterparty not in known
    }
    is_new = bool(payment.counterparty) and payment.counterparty not in known
    seen_in_window = payment.counterparty in new_tags
    collected = sum(p.amount for p in same_currency if p.kind is PaymentKind.COLLECTION)
    share = min(payment.amount / collected, _SHARE_CAP) if collected else 0.0
    return (
        major_log10(payment.amount, payment.currency),
        1.0 if payment.kind is PaymentKind.PAYOUT else 0.0,
        min(max(age, 0.0), _MAX_AGE_DAYS),
        float(len(recent)),
        major_log10(sum(p.amount for p in same_currency), payment.currency),
        float(now.hour),
        1.0 if is_new and not seen_in_window else 0.0,
        float(len(new_tags | ({payment.counterparty} if is_new else set()))),
        share if payment.kind is PaymentKind.PAYOUT else 0.0,
    )


@dataclass(frozen=True, slots=True)
class Contribution:
    """How much one feature moved the score (in log-odds), and the value it had."""

    feature: str
    value: float
    contribution: float


@dataclass(frozen=True, slots=True)
class RiskScore:
    model_version: str
    # The model's probability of fraud, 0..1.
    score: float
    # The features that moved the score most, largest effect first.
    top: tuple[Contribution, ...] = ()


def top_contributions(
    values: Sequence[float], contributions: Sequence[float], count: int = TOP_CONTRIBUTIONS
) -> tuple[Contribution, ...]:
    """The ``count`` features with the largest contributions by magnitude (ties: by order)."""
    ranked = sorted(range(len(FEATURES)), key=lambda i: (-abs(contributions[i]), i))
    return tuple(
        Contribution(FEATURES[i], float(values[i]), float(contributions[i])) for i in ranked[:count]
    )


@dataclass(frozen=True, slots=True)
class ScoreThresholds:
    review: float = 0.5
    decline: float = 0.9

    def __post_init__(self) -> None:
        if not 0.0 < self.review <= self.decline <= 1.0:
            raise ValueError(
                f"score thresholds: need 0 < review ({self.review}) <= decline "
                f"({self.decline}) <= 1"
            )

    def verdict(self, score: float) -> Verdict:
        if score >= self.decline:
            return Verdict.DECLINE
        if score >= self.review:
            return Verdict.REVIEW
        return Verdict.APPROVE


SCORE_REASONS = {Verdict.DECLINE: "RISK_SCORE_DECLINE", Verdict.REVIEW: "RISK_SCORE_REVIEW"}
MONITORING_REASON = "MONITORING_ALERT"
_STRICTNESS = {Verdict.APPROVE: 0, Verdict.REVIEW: 1, Verdict.DECLINE: 2}


def stricter(first: Verdict, second: Verdict) -> Verdict:
    return first if _STRICTNESS[first] >= _STRICTNESS[second] else second


@dataclass(frozen=True, slots=True)
class RiskDecision:
    """Why a payment was approved, held or declined: the rules, the score, the alerts.

    ``verdict``/``reason``: the outcome (the strictest of the three, the rules
    first on a tie); the parts keep what each said, for an analyst.
    """

    verdict: Verdict
    reason: str
    rules_verdict: Verdict
    rules_reason: str
    score: RiskScore | None = None
    score_verdict: Verdict | None = None
    thresholds: ScoreThresholds | None = None
    # (alert id, rule name) of the alerts the payment raised.
    alerts: tuple[tuple[str, str], ...] = ()


def combine(
    rules_verdict: Verdict,
    rules_reason: str,
    score: RiskScore | None,
    thresholds: ScoreThresholds,
    alerts: tuple[tuple[str, str], ...] = (),
    alerts_hold: bool = False,
) -> RiskDecision:
    """The payment's decision from the rules' verdict, the model's score and the alerts."""
    verdict, reason = rules_verdict, rules_reason
    score_verdict = thresholds.verdict(score.score) if score is not None else None
    if score_verdict is not None and _STRICTNESS[score_verdict] > _STRICTNESS[verdict]:
        verdict, reason = score_verdict, SCORE_REASONS[score_verdict]
    if alerts and alerts_hold and verdict is Verdict.APPROVE:
        verdict, reason = Verdict.REVIEW, MONITORING_REASON
    return RiskDecision(
        verdict=verdict,
        reason=reason,
        rules_verdict=rules_verdict,
        rules_reason=rules_reason,
        score=score,
        score_verdict=score_verdict,
        thresholds=thresholds if score is not None else None,
        alerts=alerts if verdict is not Verdict.DECLINE else (),
    )
