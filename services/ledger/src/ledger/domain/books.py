"""The books a journal builds, rebuilt record by record: every record must add up.

The chain proves that records were not changed after they were hashed; it says
nothing of a journal whose records were wrong when written, or of a copy made
up by someone who hashed it himself. Replaying the arithmetic does: each entry
of an account follows the one before it (its version one more, its sums the
previous sums plus its own effect), no sum is negative, no account passes the
limit it was opened with, a transfer's debits equal its credits in every
currency, posted and pending alike, and a refused transfer moves nothing. Used
by verification of a journal from its first record and by import. Pure: no I/O.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ledger.domain.checkpoint import Checkpoint, Head, check_chain
from ledger.domain.journal import Broken
from ledger.domain.journal_records import JournalRow
from ledger.domain.model import Account, Direction, Entry
from ledger.domain.replay import AccountOpenedChange, BadBody, Change, TransferChange, read_body


@dataclass(slots=True)
class _Kept:
    """What the replay keeps of an account: its terms and its running state."""

    currency: str
    no_debits_past_credits: bool
    no_credits_past_debits: bool
    sums: tuple[int, int, int, int] = (0, 0, 0, 0)  # debits/credits posted, pending
    version: int = 0


class ReplayedBooks:
    """Accounts' running state as the records build it (memory grows with accounts only)."""

    def __init__(self) -> None:
        self._accounts: dict[str, _Kept] = {}

    def apply(self, change: Change) -> str | None:
        """Take the next record's change; why it does not add up, or None when it does."""
        if isinstance(change, AccountOpenedChange):
            return self._open(change.account)
        return self._transfer(change)

    def _open(self, account: Account) -> str | None:
        if account.id in self._accounts:
            return f"account {account.id} is opened a second time"
        self._accounts[account.id] = _Kept(
            account.currency,
            account.debits_must_not_exceed_credits,
            account.credits_must_not_exceed_debits,
        )
        return None

    def _transfer(self, change: TransferChange) -> str | None:
        record = change.record
        if not record.ok and change.entries:
            return f"transfer {record.id} was refused yet has entries"
        # Per currency: debits and credits added, posted and pending.
        moved: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for entry in change.entries:
            problem = self._entry(entry, record.id, moved)
            if problem is not None:
                return problem
        # Limits hold once the transfer is applied (the decision checks them then, not
        # between two entries of one account).
        for account_id in sorted({entry.account_id for entry in change.entries}):
            problem = self._limits(account_id, record.id)
            if problem is not None:
                return problem
        for currency, (debits, credits, debits_held, credits_held) in sorted(moved.items()):
            if debits != credits or debits_held != credits_held:
                return (
                    f"transfer {record.id} does not balance in {currency}: debits "
                    f"{debits} (held {debits_held}) against credits {credits} "
                    f"(held {credits_held})"
                )
        return None

    def _entry(self, entry: Entry, transfer_id: str, moved: dict[str, list[int]]) -> str | None:
        kept = self._accounts.get(entry.account_id)
        if kept is None:
            return f"transfer {transfer_id} has an entry of account {entry.account_id}, not opened"
        if entry.amount <= 0:
            return f"transfer {transfer_id}: an entry of {entry.account_id} moves {entry.amount}"
        if entry.sequence != kept.version + 1:
            return (
                f"transfer {transfer_id}: account {entry.account_id}'s entry is version "
                f"{entry.sequence}, not {kept.version + 1}"
            )
        effect = entry.effect()
        after = tuple(was + added for was, added in zip(kept.sums, effect, strict=True))
        stated = (
            entry.debits_posted,
            entry.credits_posted,
            entry.debits_pending,
            entry.credits_pending,
        )
        if stated != after:
            return (
                f"transfer {transfer_id}: account {entry.account_id}'s sums after its entry "
                f"{entry.sequence} are {stated}, not {after}"
            )
        if min(after) < 0:
            return f"transfer {transfer_id}: account {entry.account_id}'s sums {after} go below 0"
        kept.sums, kept.version = after, entry.sequence
        total = moved[kept.currency]
        side = 0 if entry.direction is Direction.DEBIT else 1
        posted, held = effect[side], effect[side + 2]
        total[side] += posted
        total[side + 2] += held
        return None

    def _limits(self, account_id: str, transfer_id: str) -> str | None:
        kept = self._accounts[account_id]
        debits, credits, debits_held, credits_held = kept.sums
        if kept.no_debits_past_credits and debits + debits_held > credits:
            return f"transfer {transfer_id}: account {account_id} is overdrawn {kept.sums}"
        if kept.no_credits_past_debits and credits + credits_held > debits:
            return (
                f"transfer {transfer_id}: account {account_id}'s credits pass its debits "
                f"{kept.sums}"
            )
        return None


def check_history(
    records: Iterable[JournalRow], *, head: Head, checkpoints: Iterable[Checkpoint] = ()
) -> Broken | None:
    """``check_chain`` from the first record, with the books replayed as records pass it.

    The first break of either kind, by sequence: a record is replayed once the chain
    check has passed it, and the replay stops at the first record that does not add up.
    """
    books = ReplayedBooks()
    unbalanced: list[Broken] = []

    def passed() -> Iterator[JournalRow]:
        for record in records:
            yield record
            try:
                problem = books.apply(read_body(record.body))
            except BadBody as error:
                problem = f"its body cannot be read: {error}"
            if problem is not None:
                unbalanced.append(Broken(record.sequence, problem))
                return

    broken = check_chain(passed(), head=head, checkpoints=checkpoints)
    return unbalanced[0] if unbalanced else broken
