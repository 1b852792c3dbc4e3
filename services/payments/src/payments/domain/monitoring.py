"""Transaction monitoring: rules over a customer's recent activity that raise alerts. Pure.

Beside the velocity rules (``fraud``), which refuse a payment on its own, these
look for patterns across the customer's payments in a window:

- STRUCTURING: several payments of one kind and currency just under a threshold
  (the structuring amount, else the review amount): ``min_count`` or more in
  ``[threshold - margin, threshold)`` within the window, this one among them;
- RAPID_IN_OUT: a payout soon after collections (within ``in_out_window``) that
  takes out at least ``in_out_share`` of what was collected in its currency;
- NEW_COUNTERPARTIES: ``new_counterparties`` or more distinct counterparties the
  customer first paid within the window (one never paid before the window is new).

An alert names its rule, the payments that make the pattern, the figures
(evidence) and when it was raised; a reviewer resolves it. While one of a
customer's alerts of a rule is open no second one of that rule is raised for it.
Whether an alert also holds its payment for review is the operator's choice
(``hold_for_review``, off by default): monitoring is watched afterwards; the
rules of ``fraud`` and the score are what stop a payment.

Counterparties are compared by tags (a keyed digest of the account number the
adapter computes), never by the number itself.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from chassis.kernel.audit import Requester
from chassis.kernel.errors import FailedPrecondition

from payments.domain.states import PaymentKind

BASIS_POINTS = 10_000


class AlertRule(enum.IntEnum):
    STRUCTURING = 1
    RAPID_IN_OUT = 2
    NEW_COUNTERPARTIES = 3


class AlertState(enum.IntEnum):
    OPEN = 1
    RESOLVED = 2


class AlertResolution(enum.IntEnum):
    # A reviewer found the pattern suspicious (to be reported, the customer looked at).
    CONFIRMED = 1
    # A reviewer found it harmless.
    DISMISSED = 2


@dataclass(frozen=True, slots=True)
class MonitoringRules:
    window: timedelta = timedelta(hours=24)
    # Per currency, minor units; a currency without one has no structuring rule.
    structuring_amount: Mapping[str, int] = field(default_factory=dict)
    structuring_margin_bp: int = 1_000
    structuring_min_count: int = 3
    # Zero: no rapid in-and-out rule.
    in_out_window: timedelta = timedelta(hours=1)
    in_out_share_bp: int = 8_000
    # 0: no new-counterparties rule.
    new_counterparties: int = 5
    hold_for_review: bool = False

    @property
    def enabled(self) -> bool:
        return bool(
            self.structuring_amount or self.in_out_window > timedelta(0) or self.new_counterparties
        )

    @property
    def lookback(self) -> timedelta:
        """How far back the activity the rules look at reaches."""
        return max(self.window, self.in_out_window)


@dataclass(frozen=True, slots=True)
class RecentPayment:
    """One of the customer's payments as the rules see it (declined ones are not shown)."""

    payment_id: str
    kind: PaymentKind
    amount: int
    currency: str
    created_at: datetime
    # The counterparty's tag (empty when not known, e.g. erased).
    counterparty: str = ""


@dataclass(frozen=True, slots=True)
class Activity:
    """A customer's payments since the rules' lookback and what the rules need beside them."""

    recent: tuple[RecentPayment, ...] = ()
    # Counterparty tags the customer paid before the window (of those asked about).
    known_counterparties: frozenset[str] = frozenset()
    # Rules with an open alert for this customer.
    open_rules: frozenset[AlertRule] = frozenset()


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule's pattern, before it becomes an alert."""

    rule: AlertRule
    payment_ids: tuple[str, ...]
    evidence: Mapping[str, int | str]


def alert_id(payment_id: str, rule: AlertRule) -> str:
    """The alert a payment raised under a rule: the same on every retry of its decision."""
    digest = hashlib.sha256(f"{payment_id}|{rule.name}".encode()).hexdigest()[:32]
    return f"alr_{digest}"


def monitor(
    rules: MonitoringRules, activity: Activity, payment: RecentPayment, now: datetime
) -> list[Finding]:
    """What the customer's activity with ``payment`` added shows; rules with an open alert
    for the customer are not looked at again."""
    findings = [
        _structuring(rules, activity.recent, payment, now),
        _rapid_in_out(rules, activity.recent, payment, now),
        _new_counterparties(rules, activity, payment, now),
    ]
    return [f for f in findings if f is not None and f.rule not in activity.open_rules]


def _within(recent: Iterable[RecentPayment], since: datetime) -> list[RecentPayment]:
    return [p for p in recent if p.created_at >= since]


def _structuring(
    rules: MonitoringRules, recent: Sequence[RecentPayment], payment: RecentPayment, now: datetime
) -> Finding | None:
    threshold = rules.structuring_amount.get(payment.currency)
    if not threshold or rules.structuring_min_count < 1:
        return None
    low = threshold - threshold * rules.structuring_margin_bp // BASIS_POINTS
    if not low <= payment.amount < threshold:
        return None
    band = [
        p
        for p in _within(recent, now - rules.window)
        if p.kind is payment.kind and p.currency == payment.currency and low <= p.amount < threshold
    ]
    band.append(payment)
    if len(band) < rules.structuring_min_count:
        return None
    return Finding(
        AlertRule.STRUCTURING,
        tuple(p.payment_id for p in band),
        {
            "threshold": threshold,
            "band_low": low,
            "count": len(band),
            "total": sum(p.amount for p in band),
            "currency": payment.currency,
            "window_seconds": int(rules.window.total_seconds()),
        },
    )


def _rapid_in_out(
    rules: MonitoringRules, recent: Sequence[RecentPayment], payment: RecentPayment, now: datetime
) -> Finding | None:
    if payment.kind is not PaymentKind.PAYOUT or rules.in_out_window <= timedelta(0):
        return None
    collections = [
        p
        for p in _within(recent, now - rules.in_out_window)
        if p.kind is PaymentKind.COLLECTION and p.currency == payment.currency
    ]
    collected = sum(p.amount for p in collections)
    if not collected or payment.amount * BASIS_POINTS < collected * rules.in_out_share_bp:
        return None
    first = min(p.created_at for p in collections)
    return Finding(
        AlertRule.RAPID_IN_OUT,
        (*(p.payment_id for p in collections), payment.payment_id),
        {
            "collected": collected,
            "paid_out": payment.amount,
            "currency": payment.currency,
            "seconds_since_first_collection": int((now - first).total_seconds()),
        },
    )


def _new_counterparties(
    rules: MonitoringRules, activity: Activity, payment: RecentPayment, now: datetime
) -> Finding | None:
    if payment.kind is not PaymentKind.PAYOUT or rules.new_counterparties < 1:
        return None
    if not payment.counterparty or payment.counterparty in activity.known_counterparties:
        return None
    first_paid: dict[str, str] = {}
    for p in [*_within(activity.recent, now - rules.window), payment]:
        if (
            p.kind is PaymentKind.PAYOUT
            and p.counterparty
            and p.counterparty not in activity.known_counterparties
        ):
            first_paid.setdefault(p.counterparty, p.payment_id)
    # Only the payment that reaches the count raises it (the one paying a new counterparty).
    if len(first_paid) < rules.new_counterparties:
        return None
    return Finding(
        AlertRule.NEW_COUNTERPARTIES,
        tuple(first_paid.values()),
        {
            "new_counterparties": len(first_paid),
            "window_seconds": int(rules.window.total_seconds()),
        },
    )


class Activities:
    """The customers' activity, added to while a group of new payments is decided: each
    one accepted counts for those decided after it (like ``fraud.Velocities``)."""

    def __init__(self, read: Mapping[str, Activity]) -> None:
        self._recent = {c: list(a.recent) for c, a in read.items()}
        self._known = {c: a.known_counterparties for c, a in read.items()}
        self._open = {c: set(a.open_rules) for c, a in read.items()}

    def of(self, customer_id: str) -> Activity:
        return Activity(
            tuple(self._recent.get(customer_id, ())),
            self._known.get(customer_id, frozenset()),
            frozenset(self._open.get(customer_id, ())),
        )

    def count(self, customer_id: str, payment: RecentPayment, raised: Iterable[AlertRule]) -> None:
        self._recent.setdefault(customer_id, []).append(payment)
        self._open.setdefault(customer_id, set()).update(raised)


@dataclass(eq=False)
class Alert:
    """A pattern a reviewer must look at."""

    id: str
    customer_id: str
    rule: AlertRule
    payment_ids: tuple[str, ...]
    evidence: Mapping[str, int | str]
    created_at: datetime
    state: AlertState = AlertState.OPEN
    resolution: AlertResolution | None = None
    resolved_by: Requester | None = None
    resolved_at: datetime | None = None
    note: str = ""
    version: int = 0

    @classmethod
    def raised(cls, customer_id: str, payment_id: str, finding: Finding, now: datetime) -> Alert:
        return cls(
            id=alert_id(payment_id, finding.rule),
            customer_id=customer_id,
            rule=finding.rule,
            payment_ids=finding.payment_ids,
            evidence=dict(finding.evidence),
            created_at=now,
        )

    def resolve(
        self,
        resolution: AlertResolution,
        now: datetime,
        reviewer: Requester | None = None,
        note: str = "",
    ) -> bool:
        """Record the reviewer's word; asking again for the same one changes nothing (False).
        A resolved alert keeps its first resolution."""
        if self.state is AlertState.RESOLVED:
            if self.resolution is resolution:
                return False
            earlier = self.resolution.name if self.resolution else ""
            raise FailedPrecondition(
                "ALERT_ALREADY_RESOLVED",
                f"alert {self.id} was resolved as {earlier}; a resolution is not changed",
                metadata={"alert_id": self.id},
            )
        self.state = AlertState.RESOLVED
        self.resolution = resolution
        self.resolved_by = reviewer
        self.resolved_at = now
        self.note = note
        return True
