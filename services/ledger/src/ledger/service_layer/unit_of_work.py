"""The ledger's unit of work as its use cases see it: one transaction over its store."""

from __future__ import annotations

from collections.abc import Iterable

from chassis.kernel.uow import UnitOfWork

from ledger.service_layer.ports import LedgerStore


class LedgerUnitOfWork(UnitOfWork):
    store: LedgerStore

    def repositories(self) -> Iterable[LedgerStore]:
        return (self.store,)
