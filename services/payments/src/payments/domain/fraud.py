"""Fraud rules: approve, decline with a reason, or hold for a reviewer. Pure.

The rules (all configurable, amounts per currency in minor units; a currency
without an entry has no such limit):
- a per-payment limit: above it, declined (AMOUNT_OVER_LIMIT);
- a lower per-payment cap for new customers, younger than ``new_customer_age``
  (NEW_CUSTOMER_LIMIT_EXCEEDED);
- velocity per customer in a sliding window: the number of payments
  (VELOCITY_COUNT_EXCEEDED) and their sum per currency
  (VELOCITY_AMOUNT_EXCEEDED), counting this one;
- a review threshold: at or above it, the payment waits for ApprovePayment or
  RejectPayment (LARGE_AMOUNT).

Refunds are not assessed: they send money back where it came from.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta


class Verdict(enum.Enum):
    APPROVE = "approve"
    DECLINE = "decline"
    REVIEW = "review"


@dataclass(frozen=True, slots=True)
class FraudDecision:
    verdict: Verdict
    reason: str = ""


APPROVED = FraudDecision(Verdict.APPROVE)


@dataclass(frozen=True, slots=True)
class FraudRules:
    max_amount: Mapping[str, int] = field(default_factory=dict)
    review_amount: Mapping[str, int] = field(default_factory=dict)
    velocity_window: timedelta = timedelta(hours=1)
    # 0: no count limit.
    velocity_max_count: int = 0
    velocity_max_amount: Mapping[str, int] = field(default_factory=dict)
    new_customer_age: timedelta = timedelta(days=30)
    new_customer_max_amount: Mapping[str, int] = field(default_factory=dict)

    @property
    def uses_velocity(self) -> bool:
        """Whether any rule needs the customer's recent payments counted."""
        return bool(self.velocity_max_count or self.velocity_max_amount)


@dataclass(frozen=True, slots=True)
class Velocity:
    """The customer's earlier payments in the window (declined ones do not count)."""

    count: int = 0
    amount: int = 0  # in the currency of the payment assessed


class Velocities:
    """The customers' recent payments, counted on while a group of new ones is decided:
    each one accepted counts for those decided after it (declined ones do not count)."""

    def __init__(self, recent: Mapping[tuple[str, str], tuple[int, int]]) -> None:
        # (customer, currency) -> [count, amount], as read when the group began.
        self._counted = {key: list(value) for key, value in recent.items()}

    def of(self, customer_id: str, currency: str) -> Velocity:
        count, amount = self._counted.setdefault((customer_id, currency), [0, 0])
        return Velocity(count, amount)

    def count(self, customer_id: str, currency: str, amount: int) -> None:
        counted = self._counted.setdefault((customer_id, currency), [0, 0])
        counted[0] += 1
        counted[1] += amount


def assess(
    rules: FraudRules,
    *,
    amount: int,
    currency: str,
    customer_since: datetime | None,
    now: datetime,
    velocity: Velocity,
) -> FraudDecision:
    limit = rules.max_amount.get(currency)
    if limit is not None and amount > limit:
        return FraudDecision(Verdict.DECLINE, "AMOUNT_OVER_LIMIT")
    new_cap = rules.new_customer_max_amount.get(currency)
    is_new = customer_since is None or now - customer_since < rules.new_customer_age
    if new_cap is not None and is_new and amount > new_cap:
        return FraudDecision(Verdict.DECLINE, "NEW_CUSTOMER_LIMIT_EXCEEDED")
    if rules.velocity_max_count and velocity.count + 1 > rules.velocity_max_count:
        return FraudDecision(Verdict.DECLINE, "VELOCITY_COUNT_EXCEEDED")
    window_cap = rules.velocity_max_amount.get(currency)
    if window_cap is not None and velocity.amount + amount > window_cap:
        return FraudDecision(Verdict.DECLINE, "VELOCITY_AMOUNT_EXCEEDED")
    review = rules.review_amount.get(currency)
    if review is not None and amount >= review:
        return FraudDecision(Verdict.REVIEW, "LARGE_AMOUNT")
    return APPROVED
