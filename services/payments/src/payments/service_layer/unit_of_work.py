"""Payments' unit of work as its use cases see it: one transaction over its repository."""

from __future__ import annotations

from collections.abc import Iterable

from chassis.kernel.uow import UnitOfWork

from payments.service_layer.ports import PaymentsRepository


class PaymentsUnitOfWork(UnitOfWork):
    # Named after the aggregates it holds, as every context's unit of work names its own.
    payments: PaymentsRepository

    def repositories(self) -> Iterable[PaymentsRepository]:
        return (self.payments,)
