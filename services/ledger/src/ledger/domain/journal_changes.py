"""What a journal record changed, read back from its body: the change stream's view.

Pure: a stored record (``JournalRow``) and the accounts it names become a
``JournalChange`` with the balance of every account the change touched, after
it. A body holds the entries the change wrote in (account_id, sequence) order,
each with the account's sums after it, so an account's last entry in the body
is its balance after the record: no query per record. What the body does not
hold is each account's currency and normal side (fixed when the account is
opened): ``accounts_named`` says which accounts a caller must know.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from ledger.domain.journal_records import JournalRow
from ledger.domain.model import Balance, Entry, NormalSide
from ledger.domain.replay import AccountOpenedChange, Change, read_body


@dataclass(frozen=True, slots=True)
class AccountTerms:
    """What a balance needs of its account and a body does not say (immutable once opened)."""

    currency: str
    normal_side: NormalSide


@dataclass(frozen=True, slots=True)
class JournalChange:
    """One journal record as the change stream sends it."""

    row: JournalRow
    transfer_id: str  # "" for an account opened
    account_id: str  # "" for a transfer
    ok: bool
    created_at: datetime
    # Every account the change touched, in account id order, as the change left it.
    balances: tuple[Balance, ...]


def decoded(row: JournalRow) -> Change:
    """The rows the record's body holds (``ledger.domain.replay``: either layout)."""
    return read_body(row.body)


def accounts_named(change: Change) -> set[str]:
    """The accounts whose terms a transfer's balances need (an account opened says its own)."""
    if isinstance(change, AccountOpenedChange):
        return set()
    return {entry.account_id for entry in change.entries}


def opened_terms(change: Change) -> tuple[str, AccountTerms] | None:
    """The terms an account opened states (so a stream learns them as it goes)."""
    if not isinstance(change, AccountOpenedChange):
        return None
    account = change.account
    return account.id, AccountTerms(account.currency, account.normal_side)


def journal_change(
    row: JournalRow, change: Change, terms: Mapping[str, AccountTerms]
) -> JournalChange:
    """The record's change; ``terms`` holds every account of ``accounts_named(change)``."""
    if isinstance(change, AccountOpenedChange):
        account = change.account
        opened_at = account.created_at
        assert opened_at is not None  # read_body requires it
        balance = Balance(account.id, account.currency, account.normal_side, as_of=opened_at)
        return JournalChange(
            row,
            transfer_id="",
            account_id=account.id,
            ok=True,
            created_at=opened_at,
            balances=(balance,),
        )
    last: dict[str, Entry] = {}
    for entry in change.entries:  # (account_id, sequence) order: the last one wins
        last[entry.account_id] = entry
    balances = []
    for account_id in sorted(last):
        entry = last[account_id]
        account_terms = terms[account_id]
        balances.append(
            Balance(
                account_id,
                account_terms.currency,
                account_terms.normal_side,
                entry.debits_posted,
                entry.credits_posted,
                entry.debits_pending,
                entry.credits_pending,
                entry.created_at,
                entry.sequence,
            )
        )
    record = change.record
    return JournalChange(
        row,
        transfer_id=record.id,
        account_id="",
        ok=record.ok,
        created_at=record.created_at,
        balances=tuple(balances),
    )
