"""The ledger in memory: a fake of its database, repository and unit of work, without I/O.

For fast use-case tests and simulations. It keeps the SQL repository's contract
(``ledger.service_layer.ports.LedgerRepository``; tests/integration's contract
tests run both): records carry how they were resolved or reversed, an id or a
resolution written twice is a lost race, accounts are locked for the whole
transaction (one transaction at a time), and a transaction that does not commit
leaves nothing behind (``chassis.kernel.memory``). Committed events are kept in
``MemoryLedgerDatabase.events``, in commit order, as the outbox would hold them.
``MemoryJournal`` keeps the SQL journal store's contract
(``ledger.service_layer.ports.JournalStore``): verification, checkpoints,
export and import run on the fake too.
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from chassis.kernel.clock import Clock, SystemClock
from chassis.kernel.errors import RetryTransaction
from chassis.kernel.memory import MemoryDatabase, MemoryTable, MemoryUnitOfWork
from chassis.kernel.uow import TracksAggregates

from ledger.domain.batch import BatchOutcome
from ledger.domain.checkpoint import Checkpoint
from ledger.domain.journal import ACCOUNT_OPENED, GENESIS, TRANSFER
from ledger.domain.journal_records import (
    JournalHead,
    JournalRow,
    account_opened_body,
    appended,
    encoded,
    transfer_bodies,
)
from ledger.domain.model import Account, Entry, TransferRecord
from ledger.service_layer.unit_of_work import LedgerUnitOfWork


def _stored_account(account: Account) -> Account:
    # Events belong to the object a use case holds, never to a stored row or a copy read.
    return replace(account, events=[])


def _resolution(record: TransferRecord) -> str | None:
    return record.pending_transfer_id if record.ok and record.pending_transfer_id else None


def _reversal(record: TransferRecord) -> str | None:
    return record.reversed_transfer_id if record.ok and record.reversed_transfer_id else None


class MemoryLedgerDatabase(MemoryDatabase):
    """What the ledger's tables hold. Records are stored as written; reads derive how a record
    was resolved or reversed from the records that did it (unique, as the SQL indexes are)."""

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__()
        # Stamps the journal's rows (a simulation gives its own clock: no wall time in a run).
        self.clock: Clock = clock or SystemClock()
        self.accounts: MemoryTable[str, Account] = MemoryTable(self, copy=_stored_account)
        # Records and entries are never changed once written: shallow copies suffice.
        self.transfers: MemoryTable[str, TransferRecord] = MemoryTable(
            self, copy=copy.copy, unique={"resolution": _resolution, "reversal": _reversal}
        )
        # Open holds: id -> expiry (None: never expires).
        self.open_holds: MemoryTable[str, tuple[str, datetime | None]] = MemoryTable(
            self, copy=lambda hold: hold
        )
        # Per account, its entries in sequence order (sequence n at index n - 1).
        self.entries: dict[str, list[Entry]] = {}
        # The journal in sequence order (sequence n at index n - 1); its head is the last row.
        self.journal: list[JournalRow] = []
        self.checkpoints: MemoryTable[int, Checkpoint] = MemoryTable(
            self, copy=lambda checkpoint: replace(checkpoint, events=[])
        )

    def uow(self) -> MemoryLedgerUnitOfWork:
        """A new unit of work on this database (the factory a use case is given)."""
        return MemoryLedgerUnitOfWork(self)


class MemoryLedgerRepository(TracksAggregates):
    def __init__(self, database: MemoryLedgerDatabase) -> None:
        super().__init__()
        self._db = database

    # --- accounts -------------------------------------------------------------

    def insert_account(self, account: Account) -> None:
        self._db.accounts.insert(account.id, self.track(account))
        self._append_journal(ACCOUNT_OPENED, encoded([account_opened_body(account)]))

    def get_account(self, account_id: str) -> Account | None:
        return self._db.accounts.get(account_id)

    def list_accounts(self, after: str | None, limit: int, customer_id: str) -> list[Account]:
        return self._db.accounts.select(
            lambda a: (
                (after is None or a.id > after)
                and (not customer_id or a.customer_id == customer_id)
            ),
            order_by=lambda a: a.id,
            limit=limit,
        )

    # --- transfers --------------------------------------------------------------

    def _derived(self, record: TransferRecord) -> TransferRecord:
        resolution = self._db.transfers.by("resolution", record.id)
        if resolution is not None:
            record.resolved_by = resolution.id
            record.resolution_kind = resolution.kind
        reversal = self._db.transfers.by("reversal", record.id)
        if reversal is not None:
            record.reversed_by = reversal.id
        return record

    def load_records(self, transfer_ids: Iterable[str]) -> dict[str, TransferRecord]:
        found = self._db.transfers.get_many(set(transfer_ids))
        return {tid: self._derived(record) for tid, record in found.items()}

    def get_record(self, transfer_id: str) -> TransferRecord | None:
        return self.load_records([transfer_id]).get(transfer_id)

    def load_for_batch(
        self,
        transfer_ids: Sequence[str],
        leg_account_ids: Iterable[str],
        referenced_ids: Iterable[str],
    ) -> tuple[dict[str, TransferRecord], dict[str, Account]]:
        referenced = set(referenced_ids)
        known = self.load_records([*transfer_ids, *referenced])
        account_ids = set(leg_account_ids)
        for transfer_id in referenced & known.keys():
            account_ids.update(leg.account_id for leg in known[transfer_id].legs)
        # Locked: the database runs one transaction at a time.
        return known, self._db.accounts.get_many(sorted(account_ids))

    def due_holds(self, now: datetime, limit: int) -> list[str]:
        due = self._db.open_holds.select(
            lambda hold: hold[1] is not None and hold[1] <= now,
            order_by=lambda hold: (hold[1], hold[0]),
            limit=limit,
        )
        return [transfer_id for transfer_id, _ in due]

    # --- writing a batch's outcome ------------------------------------------------

    def write(self, outcome: BatchOutcome) -> None:
        self.track(outcome)
        for record in outcome.records:
            stored = copy.copy(record)
            stored.resolved_by, stored.resolution_kind, stored.reversed_by = "", None, ""
            stored.new = False
            self._db.transfers.insert(record.id, stored)
        for entry in outcome.entries:
            self.append_entry(entry)
        for changed in outcome.accounts.values():
            account = self._db.accounts.get(changed.id)
            if account is None:
                raise LookupError(f"account {changed.id} is not in the ledger")
            # The sums and the stamp only: a batch's snapshots carry nothing else to write.
            account.debits_posted = changed.debits_posted
            account.credits_posted = changed.credits_posted
            account.debits_pending = changed.debits_pending
            account.credits_pending = changed.credits_pending
            account.entry_sequence = changed.entry_sequence
            account.last_entry_at = changed.last_entry_at
            self._db.accounts.put(account.id, account)
        # A hold placed and resolved within the batch never needs indexing.
        closed = set(outcome.closed_holds)
        opened = {hold.id for hold in outcome.opened_holds}
        for hold in outcome.opened_holds:
            if hold.id not in closed:
                self._db.open_holds.insert(hold.id, (hold.id, hold.expires_at))
        for hold_id in closed - opened:
            self._db.open_holds.delete(hold_id)
        self._append_journal(TRANSFER, encoded(transfer_bodies(outcome)))

    # --- the journal ----------------------------------------------------------------

    def _append_journal(self, kind: str, bodies: list[bytes]) -> None:
        if not bodies:
            return
        journal = self._db.journal
        rows = appended(self.journal_head(), [(kind, b) for b in bodies], self._db.clock.now())
        length = len(journal)
        journal.extend(rows)
        self._db.changed(_truncate(journal, length))

    def journal_head(self) -> JournalHead:
        if not self._db.journal:
            return JournalHead(0, GENESIS)
        last = self._db.journal[-1]
        return JournalHead(last.sequence, last.hash)

    def journal_after(self, sequence: int, limit: int) -> list[JournalRow]:
        start = max(sequence, 0)
        return self._db.journal[start : start + limit]

    def append_entry(self, entry: Entry) -> None:
        """An account's next entry (its sequence one past the last)."""
        history = self._db.entries.setdefault(entry.account_id, [])
        if entry.sequence <= len(history):
            raise RetryTransaction(f"entry {entry.account_id}/{entry.sequence} exists already")
        if entry.sequence != len(history) + 1:
            raise ValueError(f"entry {entry.account_id}/{entry.sequence} leaves a gap")
        history.append(copy.copy(entry))
        self._db.changed(_truncate(history, len(history) - 1))

    # --- history ------------------------------------------------------------------

    def seal_history(self, account_id: str, through: datetime) -> None:
        account = self._db.accounts.get(account_id)
        if account is None:
            return
        if account.sealed_through is None or account.sealed_through < through:
            account.sealed_through = through
            self._db.accounts.put(account_id, account)

    def entry_as_of(self, account_id: str, as_of: datetime) -> Entry | None:
        # An account's entries are stamped in sequence order, never backwards (Account.next_stamp).
        history = self._db.entries.get(account_id, [])
        index = bisect.bisect_right(history, as_of, key=lambda entry: entry.created_at)
        return copy.copy(history[index - 1]) if index else None

    def list_entries(self, account_id: str, after_sequence: int, limit: int) -> list[Entry]:
        history = self._db.entries.get(account_id, [])
        start = max(after_sequence, 0)
        return [copy.copy(entry) for entry in history[start : start + limit]]


def _truncate(history: list[Any], length: int) -> Callable[[], None]:
    def undo() -> None:
        del history[length:]

    return undo


class MemoryJournal(TracksAggregates):
    """The journal store on the fake: its head is its last record (the SQL head row can
    disagree only when someone changed the tables, which the fake cannot be)."""

    def __init__(self, database: MemoryLedgerDatabase, ledger: MemoryLedgerRepository) -> None:
        super().__init__()
        self._db = database
        self._ledger = ledger

    def read_snapshot(self) -> None:
        """One transaction at a time: every read is of one snapshot already."""

    def head(self) -> tuple[int, bytes]:
        head = self._ledger.journal_head()
        return head.sequence, head.hash

    def records(self, after: int, through: int) -> Generator[JournalRow, None, None]:
        yield from self._db.journal[max(after, 0) : max(through, 0)]

    def hash_at(self, sequence: int) -> bytes | None:
        journal = self._db.journal
        return journal[sequence - 1].hash if 1 <= sequence <= len(journal) else None

    def checkpoints(self) -> Generator[Checkpoint, None, None]:
        yield from self._db.checkpoints.select(order_by=lambda c: c.sequence)

    def latest_checkpoint(self) -> Checkpoint | None:
        newest = self._db.checkpoints.select(order_by=lambda c: -c.sequence, limit=1)
        return newest[0] if newest else None

    def add_checkpoint(self, checkpoint: Checkpoint) -> bool:
        if checkpoint.sequence in self._db.checkpoints:
            return False
        self._db.checkpoints.insert(checkpoint.sequence, checkpoint)
        self.track(checkpoint)
        return True

    def is_empty(self) -> bool:
        return not (len(self._db.accounts) or len(self._db.transfers) or self._db.journal)

    def insert_records(self, records: Sequence[JournalRow], recorded_at: datetime) -> None:
        journal = self._db.journal
        length = len(journal)
        for offset, record in enumerate(records, start=length + 1):
            if record.sequence != offset:
                # The primary key and the chain's order: the SQL table refuses the same.
                raise ValueError(f"journal record {record.sequence} where {offset} goes")
        journal.extend(replace(r, recorded_at=r.recorded_at or recorded_at) for r in records)
        self._db.changed(_truncate(journal, length))

    def set_head(self, sequence: int, digest: bytes) -> None:
        if self.head() != (sequence, digest):
            raise ValueError(f"the head {sequence} is not the journal's last record")

    def restore(
        self,
        accounts: Sequence[Account],
        records: Sequence[TransferRecord],
        entries: Sequence[Entry],
        opened: Sequence[tuple[str, datetime | None]],
        closed: Sequence[str],
    ) -> None:
        for account in accounts:
            self._db.accounts.insert(account.id, account)
        for record in records:
            stored = copy.copy(record)  # as ``write`` stores one: what is derived, derived on read
            stored.resolved_by, stored.resolution_kind, stored.reversed_by = "", None, ""
            stored.new = False
            self._db.transfers.insert(record.id, stored)
        for entry in entries:
            self._ledger.append_entry(entry)
        for hold_id in closed:
            self._db.open_holds.delete(hold_id)
        for hold_id, expires_at in opened:
            self._db.open_holds.insert(hold_id, (hold_id, expires_at))

    def restore_sums(self, last_entries: Iterable[Entry]) -> None:
        for entry in last_entries:
            account = self._db.accounts.get(entry.account_id)
            if account is None:
                raise LookupError(f"account {entry.account_id} is not in the ledger")
            account.debits_posted = entry.debits_posted
            account.credits_posted = entry.credits_posted
            account.debits_pending = entry.debits_pending
            account.credits_pending = entry.credits_pending
            account.entry_sequence = entry.sequence
            account.last_entry_at = entry.created_at
            self._db.accounts.put(account.id, account)


class MemoryLedgerUnitOfWork(MemoryUnitOfWork[MemoryLedgerDatabase], LedgerUnitOfWork):
    def _open_repositories(self, database: MemoryLedgerDatabase) -> None:
        self.ledger = MemoryLedgerRepository(database)
        self.journal = MemoryJournal(database, self.ledger)
