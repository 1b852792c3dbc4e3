"""What the ledger's use cases need from the outside, as ports the adapters implement.

- ``LedgerRepository``: storage (``ledger.adapters.repository`` on SQL,
  ``ledger.adapters.memory`` in memory), opened by the unit of work;
- ``SubmitTransfer``: the group commit a single-transfer call joins
  (``chassis.batching.GroupCommitter`` around ``use_cases.execute_batch``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ledger.domain.batch import BatchOutcome
from ledger.domain.checkpoint import Checkpoint
from ledger.domain.events import LedgerEvent
from ledger.domain.journal_records import JournalHead, JournalRow
from ledger.domain.model import Account, Entry, ItemResult, TransferRecord, TransferRequest


class LedgerRepository(Protocol):
    """Accounts and their journal (transfer records, entries, open holds), read for a decision
    and written set-based. One repository: a batch is decided over both and written as one.

    What a transaction reads sees what it wrote. ``load_for_batch`` returns the
    accounts locked until the transaction ends. An id or a resolution written
    twice (a second account with an id, a second applied post of one hold, a
    second reversal of one transfer) fails with an error the unit of work calls
    a lost race. The unit of work collects the events of what ``insert_account``
    and ``write`` were given (``take_events``).
    """

    def insert_account(self, account: Account) -> None: ...

    def get_account(self, account_id: str) -> Account | None: ...

    def list_accounts(self, after: str | None, limit: int, customer_id: str) -> list[Account]:
        """Accounts by id after ``after``, at most ``limit``; only ``customer_id``'s if given."""
        ...

    def load_records(self, transfer_ids: Iterable[str]) -> dict[str, TransferRecord]:
        """The records of those ids that exist, with how they were resolved or reversed."""
        ...

    def load_for_batch(
        self,
        transfer_ids: Sequence[str],
        leg_account_ids: Iterable[str],
        referenced_ids: Iterable[str],
    ) -> tuple[dict[str, TransferRecord], dict[str, Account]]:
        """The records of a batch's own and referenced ids, and every account its legs and the
        referenced transfers' legs name, locked; a reference that appeared meanwhile asks for
        the transaction to start over (``RetryTransaction`` from the decision)."""
        ...

    def get_record(self, transfer_id: str) -> TransferRecord | None: ...

    def due_holds(self, now: datetime, limit: int) -> list[str]:
        """Open holds whose expiry is at or before ``now``, earliest first."""
        ...

    def write(self, outcome: BatchOutcome) -> None:
        """The batch's new records and entries, its accounts' new sums, its holds opened and
        closed."""
        ...

    def seal_history(self, account_id: str, through: datetime) -> None:
        """No entry of the account will be stamped at or before ``through`` from now on."""
        ...

    def entry_as_of(self, account_id: str, as_of: datetime) -> Entry | None:
        """The account's latest entry stamped at or before ``as_of``."""
        ...

    def list_entries(self, account_id: str, after_sequence: int, limit: int) -> list[Entry]:
        """The account's entries after ``after_sequence``, in order, at most ``limit``."""
        ...

    def journal_head(self) -> JournalHead:
        """The journal's head: its last sequence and hash ((0, GENESIS) when empty)."""
        ...

    def journal_after(self, sequence: int, limit: int) -> list[JournalRow]:
        """Journal records after ``sequence``, in sequence order, at most ``limit``.

        ``insert_account`` and ``write`` append their records in the same transaction:
        one per account opened, one per transfer row written, chained after the head.
        """
        ...

    def take_events(self) -> list[LedgerEvent]: ...


class JournalStore(Protocol):
    """The journal's chain as stored (``ledger.adapters.journal``, and the fake's
    ``ledger.adapters.memory.MemoryJournal``): its head, its records in order, its
    checkpoints, and the writes an import into an empty ledger makes."""

    def read_snapshot(self) -> None:
        """From here on, this transaction reads one consistent snapshot (read only)."""
        ...

    def head(self) -> tuple[int, bytes]:
        """The head's sequence and hash; (0, GENESIS) for an empty journal."""
        ...

    def records(self, after: int, through: int) -> Generator[JournalRow, None, None]:
        """The records after ``after`` through ``through``, in order, streamed."""
        ...

    def hash_at(self, sequence: int) -> bytes | None: ...

    def checkpoints(self) -> Generator[Checkpoint, None, None]:
        """Every stored checkpoint, in sequence order, streamed."""
        ...

    def latest_checkpoint(self) -> Checkpoint | None: ...

    def add_checkpoint(self, checkpoint: Checkpoint) -> bool:
        """Store it (and so publish its event) unless one is stored at its sequence."""
        ...

    def is_empty(self) -> bool:
        """No account, transfer or journal record yet."""
        ...

    def insert_records(self, records: Sequence[JournalRow], recorded_at: datetime) -> None:
        """Journal rows as they are (``recorded_at`` for rows that carry none)."""
        ...

    def set_head(self, sequence: int, digest: bytes) -> None: ...

    def restore(
        self,
        accounts: Sequence[Account],
        records: Sequence[TransferRecord],
        entries: Sequence[Entry],
        opened: Sequence[tuple[str, datetime | None]],
        closed: Sequence[str],
    ) -> None:
        """The rows a run of records wrote, as they are (accounts without their sums)."""
        ...

    def restore_sums(self, last_entries: Iterable[Entry]) -> None:
        """Each account's sums, version and last entry time from its last entry."""
        ...

    def take_events(self) -> list[LedgerEvent]: ...


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    """One item's result, with the record it applied or replayed (None when refused unseen)."""

    result: ItemResult
    record: TransferRecord | None


# The group commit as a use case sees it: one validated request in, its own item's
# outcome out. The entrypoint binds the call's deadline (a request still queued
# when it passes never runs: DeadlineExceeded) and counts the result.
SubmitTransfer = Callable[[TransferRequest], ItemOutcome]
