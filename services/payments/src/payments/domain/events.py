"""Domain events payments records; an adapter maps them to ``astra.payments.v1`` event protos."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from payments.domain.model import Payment
    from payments.domain.reconciliation import ReconciliationReport
    from payments.domain.states import PaymentState


@dataclass(frozen=True, slots=True)
class PaymentStateChanged:
    payment: Payment  # a snapshot taken right after the change
    previous_state: PaymentState | None
    state: PaymentState
    reason: str
    occurred_at: datetime

    @property
    def aggregate_id(self) -> str:
        return self.payment.id


@dataclass(frozen=True, slots=True)
class ReconciliationCompleted:
    report: ReconciliationReport
    occurred_at: datetime

    @property
    def aggregate_id(self) -> str:
        return self.report.run_id


@dataclass(frozen=True, slots=True)
class CustomerDataErased:
    customer_id: str
    payment_count: int
    occurred_at: datetime

    @property
    def aggregate_id(self) -> str:
        return self.customer_id


PaymentsEvent = PaymentStateChanged | ReconciliationCompleted | CustomerDataErased
