"""A generated, labelled data set of payments for the fraud model. Reproducible from a seed.

Each row is a payment with its customer's recent activity, drawn from one of two
populations: ordinary customers' payments, and fraud (an account taken over or
a mule: young accounts, larger amounts, payouts to counterparties never paid
before, money collected and paid straight out, at any hour). The populations
overlap, and a share of labels is flipped, so no feature gives the answer away.
Features come from ``payments.domain.risk_score.risk_features``, the function
payments scores with: the model learns on exactly what it is shown in service.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from payments.domain.monitoring import Activity, RecentPayment
from payments.domain.risk_score import FEATURES, risk_features
from payments.domain.states import PaymentKind

FRAUD_RATE = 0.04
LABEL_NOISE = 0.01
WINDOW = timedelta(hours=24)
_DAY_START = datetime(2026, 1, 5, tzinfo=UTC)
_CURRENCY = "EUR"


@dataclass(frozen=True)
class DataSet:
    features: np.ndarray  # rows x len(FEATURES), float64
    labels: np.ndarray  # rows, 0 or 1

    @property
    def rows(self) -> int:
        return int(self.labels.shape[0])


def _minor(major: float) -> int:
    return max(1, round(major * 100))


def _payment_row(rng: np.random.Generator, fraud: bool, index: int) -> tuple[float, ...]:
    if fraud:
        age_days = rng.exponential(40.0) if rng.random() < 0.7 else rng.exponential(500.0)
        amount = rng.lognormal(5.8, 1.3)
        payout = rng.random() < 0.85
        recent_count = int(rng.poisson(4.0))
        hour = int(rng.integers(0, 24))
        new_counterparty = rng.random() < 0.75
        new_in_window = int(rng.poisson(2.5))
        in_out = payout and rng.random() < 0.45
        share = rng.uniform(0.75, 1.0)
    else:
        age_days = rng.exponential(500.0)
        amount = rng.lognormal(4.2, 1.3)
        payout = rng.random() < 0.5
        recent_count = int(rng.poisson(2.0))
        hour = int(np.clip(rng.normal(13.5, 3.5), 0, 23))
        new_counterparty = rng.random() < 0.2
        new_in_window = int(rng.poisson(0.4))
        in_out = payout and rng.random() < 0.12
        share = rng.uniform(0.05, 1.1)
    now = _DAY_START + timedelta(days=index % 300, hours=hour, minutes=int(rng.integers(0, 60)))
    recent: list[RecentPayment] = []
    known = {f"cp_known_{i}" for i in range(3)}
    for i in range(recent_count):
        at = now - timedelta(seconds=int(rng.integers(60, int(WINDOW.total_seconds()))))
        kind = PaymentKind.PAYOUT if rng.random() < 0.6 else PaymentKind.COLLECTION
        tag = f"cp_new_{i}" if i < new_in_window else f"cp_known_{i % 3}"
        recent.append(
            RecentPayment(f"pay_r{i}", kind, _minor(rng.lognormal(4.0, 1.2)), _CURRENCY, at, tag)
        )
    for i in range(max(0, new_in_window - recent_count)):
        at = now - timedelta(seconds=int(rng.integers(60, int(WINDOW.total_seconds()))))
        recent.append(
            RecentPayment(
                f"pay_n{i}", PaymentKind.PAYOUT, _minor(amount / 3), _CURRENCY, at, f"cp_new_x{i}"
            )
        )
    if in_out:
        at = now - timedelta(seconds=int(rng.integers(60, 3600)))
        recent.append(
            RecentPayment("pay_in", PaymentKind.COLLECTION, _minor(amount / share), _CURRENCY, at)
        )
    counterparty = "cp_fresh" if new_counterparty else "cp_known_0"
    kind = PaymentKind.PAYOUT if payout else PaymentKind.COLLECTION
    payment = RecentPayment("pay_x", kind, _minor(amount), _CURRENCY, now, counterparty)
    activity = Activity(tuple(recent), frozenset(known))
    since = now - timedelta(days=float(age_days))
    return risk_features(payment, since, activity, WINDOW, now)


def generate(seed: int, rows: int) -> DataSet:
    """``rows`` labelled payments; the same seed and size give the same set, bit for bit."""
    if rows < 100:
        raise ValueError("rows: at least 100")
    rng = np.random.default_rng(seed)
    fraud = rng.random(rows) < FRAUD_RATE
    features = np.empty((rows, len(FEATURES)), dtype=np.float64)
    for index in range(rows):
        features[index] = _payment_row(rng, bool(fraud[index]), index)
    flipped = rng.random(rows) < LABEL_NOISE
    labels = np.where(flipped, ~fraud, fraud).astype(np.int32)
    return DataSet(features, labels)
