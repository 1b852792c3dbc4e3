"""The journal's use cases: verify it, checkpoint its head, export it, import it.

Verification streams: a journal of any length is checked holding one page of
records (``JournalStore.records``) and of checkpoints, against the chain, the
head and the checkpoints (``ledger.domain.checkpoint.check_chain``); from the
first record, and on import, the books are replayed too (``ledger.domain.books``).
"""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from chassis.kernel.clock import Clock
from chassis.kernel.errors import FailedPrecondition

from ledger.domain.books import ReplayedBooks, check_history
from ledger.domain.checkpoint import Checkpoint, Head, check_chain, hex_of
from ledger.domain.journal import GENESIS, Broken
from ledger.domain.journal_records import JournalRow
from ledger.domain.model import Account, Entry, TransferRecord
from ledger.domain.replay import AccountOpenedChange, read_body
from ledger.service_layer.ports import JournalStore
from ledger.service_layer.unit_of_work import LedgerUnitOfWork

UowFactory = Callable[[], LedgerUnitOfWork]

# Records written per round of an import (set-based: a few statements per round).
IMPORT_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a verification found: the head it checked up to, and the first break, if any."""

    head: Head
    start: Head  # where the check started: (0, GENESIS), or a checkpoint
    broken: Broken | None


class JournalBroken(FailedPrecondition):
    """An import met a record that does not verify: nothing was written."""

    def __init__(self, broken: Broken) -> None:
        super().__init__(
            "JOURNAL_BROKEN", f"sequence {broken.sequence} does not verify: {broken.reason}"
        )
        self.broken = broken


def _journal(uow: LedgerUnitOfWork) -> JournalStore:
    if uow.journal is None:
        raise RuntimeError("this unit of work keeps no journal")
    return uow.journal


def _sequence(checkpoint: Checkpoint) -> int:
    return checkpoint.sequence


def verify(
    uow_factory: UowFactory, *, from_checkpoint: bool = False, extra: Sequence[Checkpoint] = ()
) -> Verdict:
    """Check the stored journal up to its head, from the start (passing every stored
    checkpoint) or from the newest checkpoint (whose record must still have its hash).
    ``extra``: checkpoints held outside the database (published ones)."""
    with uow_factory() as uow:
        journal = _journal(uow)
        journal.read_snapshot()
        head = journal.head()
        start: Head = (0, GENESIS)
        if from_checkpoint:
            stored = journal.latest_checkpoint()
            if stored is not None:
                start = (stored.sequence, stored.hash)
                at = journal.hash_at(stored.sequence)
                if at != stored.hash:
                    why = "it is missing" if at is None else "its hash is not the checkpointed one"
                    rewritten = Broken(
                        stored.sequence,
                        f"{why} ({hex_of(stored.hash)}, checkpointed at "
                        f"{stored.recorded_at.isoformat()}): the history up to it was rewritten",
                    )
                    return Verdict(head, start, rewritten)
        # Closed here, not whenever they are collected: each holds a server-side cursor.
        with (
            contextlib.closing(journal.records(start[0], head[0])) as records,
            contextlib.closing(journal.checkpoints()) as stored_ones,
        ):
            held = heapq.merge(stored_ones, sorted(extra, key=_sequence), key=_sequence)
            if start == (0, GENESIS):  # the whole history: its books are replayed too
                broken = check_history(records, head=head, checkpoints=held)
            else:
                broken = check_chain(records, head=head, start=start, checkpoints=held)
        return Verdict(head, start, broken)


def stored_checkpoints(uow_factory: UowFactory) -> list[Checkpoint]:
    with uow_factory() as uow:
        return list(_journal(uow).checkpoints())


def checkpoint(uow_factory: UowFactory, clock: Clock) -> Checkpoint | None:
    """Store the head as a checkpoint (and publish it) if it moved since the last one.

    None when it did not move, or another process stored this head first (one
    checkpoint per head sequence: the table's key).
    """
    with uow_factory() as uow:
        journal = _journal(uow)
        sequence, digest = journal.head()
        latest = journal.latest_checkpoint()
        if sequence == 0 or (latest is not None and latest.sequence >= sequence):
            return None
        taken = Checkpoint.of_head(sequence, digest, clock.now())
        if not journal.add_checkpoint(taken):
            return None
        uow.commit()
        return taken


def export(uow_factory: UowFactory, write_head: Callable[[Head], None]) -> Iterator[JournalRow]:
    """The journal's records up to its head as it was at the start (given to ``write_head``
    first), in order, streamed from one transaction."""
    with uow_factory() as uow:
        journal = _journal(uow)
        head = journal.head()
        write_head(head)
        yield from journal.records(0, head[0])


@dataclass
class _Restoring:
    """One round of an import: the rows its records hold, holds netted within the round."""

    records: list[JournalRow]
    accounts: list[Account]
    transfers: list[TransferRecord]
    entries: list[Entry]
    opened: dict[str, object]
    closed: list[str]


def import_journal(
    uow_factory: UowFactory, clock: Clock, head: Head, records: Iterable[JournalRow]
) -> Head:
    """Replay an exported journal into an empty ledger, verifying the chain as it reads:
    its rows and its records written back as they are, each account's sums from its last
    entry. All or nothing: one transaction. Returns the new head (the file's)."""
    with uow_factory() as uow:
        journal = _journal(uow)
        if not journal.is_empty():
            raise FailedPrecondition(
                "LEDGER_NOT_EMPTY", "import-journal writes into an empty ledger database only"
            )
        now = clock.now()
        books = ReplayedBooks()
        last_entries: dict[str, Entry] = {}
        round_ = _Restoring([], [], [], [], {}, [])

        def flush() -> None:
            nonlocal round_
            journal.restore(
                round_.accounts,
                round_.transfers,
                round_.entries,
                list(round_.opened.items()),  # type: ignore[arg-type]
                round_.closed,
            )
            journal.insert_records(round_.records, now)
            round_ = _Restoring([], [], [], [], {}, [])

        def take(record: JournalRow) -> None:
            change = read_body(record.body)
            problem = books.apply(change)
            if problem is not None:  # a chain that verifies but books that do not add up
                raise JournalBroken(Broken(record.sequence, problem))
            round_.records.append(record)
            if isinstance(change, AccountOpenedChange):
                round_.accounts.append(change.account)
                return
            round_.transfers.append(change.record)
            round_.entries.extend(change.entries)
            for entry in change.entries:
                last_entries[entry.account_id] = entry  # entries come in each account's order
            for transfer_id, expires_at in change.holds_opened:
                round_.opened[transfer_id] = expires_at
            for transfer_id in change.holds_closed:
                if round_.opened.pop(transfer_id, None) is None:
                    round_.closed.append(transfer_id)

        def passed() -> Iterator[JournalRow]:
            for record in records:
                yield record
                # Asked for the next one: the chain check has passed this one.
                take(record)
                if len(round_.records) >= IMPORT_BATCH:
                    flush()

        broken = check_chain(passed(), head=head)
        if broken is not None:
            raise JournalBroken(broken)
        flush()
        journal.restore_sums(last_entries.values())
        journal.set_head(*head)
        uow.commit()
        return head
