"""What the ledger's use cases need from storage, as ports the adapters implement."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

from ledger.domain.batch import BatchOutcome
from ledger.domain.model import Account, Entry, TransferRecord


class LedgerStore(Protocol):
    """Accounts, the journal and its entries: read for a decision, written set-based.

    ``load_for_batch`` returns the accounts locked for the rest of the transaction.
    The unit of work collects the events of what ``insert_account`` and ``write``
    were given (``take_events``).
    """

    def insert_account(self, account: Account) -> None: ...

    def get_account(self, account_id: str) -> Account | None: ...

    def list_accounts(self, after: str | None, limit: int, customer_id: str) -> list[Account]: ...

    def load_records(self, transfer_ids: Iterable[str]) -> dict[str, TransferRecord]: ...

    def load_for_batch(
        self,
        transfer_ids: Sequence[str],
        leg_account_ids: Iterable[str],
        referenced_ids: Iterable[str],
    ) -> tuple[dict[str, TransferRecord], dict[str, Account]]: ...

    def get_record(self, transfer_id: str) -> TransferRecord | None: ...

    def due_holds(self, now: datetime, limit: int) -> list[str]: ...

    def write(self, outcome: BatchOutcome) -> None: ...

    def seal_history(self, account_id: str, through: datetime) -> None: ...

    def entry_as_of(self, account_id: str, as_of: datetime) -> Entry | None: ...

    def list_entries(self, account_id: str, after_sequence: int, limit: int) -> list[Entry]: ...

    def take_events(self) -> list[Any]: ...
