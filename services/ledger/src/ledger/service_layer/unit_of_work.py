"""The ledger's unit of work as its use cases see it: one transaction over its repository."""

from __future__ import annotations

from collections.abc import Iterable

from chassis.kernel.uow import UnitOfWork

from ledger.service_layer.ports import JournalStore, LedgerRepository


class LedgerUnitOfWork(UnitOfWork):
    """``uow.ledger``: the accounts and their journal (a repository is named for what it holds).

    The concrete ones: ``ledger.adapters.unit_of_work`` (SQL), ``ledger.adapters.memory``.
    """

    ledger: LedgerRepository
    # The journal's chain, checkpoints, export and import (SQL, and the in-memory fake).
    journal: JournalStore | None = None

    def repositories(self) -> Iterable[LedgerRepository | JournalStore]:
        return (self.ledger,) if self.journal is None else (self.ledger, self.journal)
