"""Payments' own metric families; bank calls and the breaker use the chassis' dependency families.

- ``payments_by_state{state}``: payments in each state, sampled from the database;
- ``payments_transitions_total{kind,state}``: state changes committed by this process;
- ``payments_reconciliation_breaks{kind}``: breaks the latest reconciliation run found;
- ``payments_stuck``: payments whose next step failed ``PAYMENTS_STUCK_AFTER_RETRIES``
  times in a row (sampled from the database);
- ``payments_house_account_usage_ratio{account}``: how much of the int64 range a house
  account's running totals use (pending counted as posted); new payments in its
  currency are refused from ``PAYMENTS_HOUSE_ACCOUNT_STOP_RATIO`` on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from chassis.metrics import Sampler, counter, gauge

from payments.domain.events import PaymentStateChanged
from payments.domain.reconciliation import BreakKind, ReconciliationReport
from payments.domain.states import PaymentState

PAYMENTS_BY_STATE = gauge(
    "payments_by_state", "Payments in each state", ("state",), mode="livemostrecent"
)
PAYMENTS_STUCK = gauge(
    "payments_stuck",
    "Payments whose next step failed PAYMENTS_STUCK_AFTER_RETRIES times in a row",
    mode="livemostrecent",
)
HOUSE_ACCOUNT_USAGE = gauge(
    "payments_house_account_usage_ratio",
    "Share of the int64 range a house account's running totals use, pending counted as posted",
    ("account",),
    mode="livemostrecent",
)
PAYMENT_TRANSITIONS = counter(
    "payments_transitions_total", "Payment state changes committed", ("kind", "state")
)


RECONCILIATION_BREAKS = gauge(
    "payments_reconciliation_breaks",
    "Breaks found by the latest reconciliation run, by kind",
    ("kind",),
    mode="livemostrecent",
)


def record_reconciliation(report: ReconciliationReport) -> None:
    found = [b.kind for b in report.breaks]
    for kind in BreakKind:
        RECONCILIATION_BREAKS.labels(kind.name).set(found.count(kind))


def count_transitions(events: Iterable[Any]) -> None:
    for event in events:
        if isinstance(event, PaymentStateChanged):
            PAYMENT_TRANSITIONS.labels(event.payment.kind.name, event.state.name).inc()


def states_sampler(
    count_by_state: Callable[[], dict[PaymentState, int]], count_stuck: Callable[[], int]
) -> Sampler:
    def sample() -> None:
        counts = count_by_state()
        for state in PaymentState:
            PAYMENTS_BY_STATE.labels(state.name).set(counts.get(state, 0))
        PAYMENTS_STUCK.set(count_stuck())

    return Sampler("payments-by-state", sample, interval=5.0)


def record_house_account(account_id: str, usage: float) -> None:
    HOUSE_ACCOUNT_USAGE.labels(account_id).set(usage)
