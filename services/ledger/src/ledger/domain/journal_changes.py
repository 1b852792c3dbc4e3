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

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger.domain.journal import ACCOUNT_OPENED
from ledger.domain.journal_records import JournalRow
from ledger.domain.model import Balance, NormalSide

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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


def decoded(row: JournalRow) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(row.body)
    return body


def instant(micros: int) -> datetime:
    """The inverse of ``ledger.domain.journal.micros``."""
    return _EPOCH + timedelta(microseconds=micros)


def accounts_named(body: Mapping[str, Any]) -> set[str]:
    """The accounts whose terms a transfer body's balances need (an account opened says its own)."""
    if body["kind"] == ACCOUNT_OPENED:
        return set()
    return {entry["account_id"] for entry in body["entries"]}


def opened_terms(body: Mapping[str, Any]) -> tuple[str, AccountTerms] | None:
    """The terms an account_opened body states (so a stream learns them as it goes)."""
    if body["kind"] != ACCOUNT_OPENED:
        return None
    account = body["account"]
    return account["id"], AccountTerms(account["currency"], NormalSide[account["normal_side"]])


def journal_change(
    row: JournalRow, body: Mapping[str, Any], terms: Mapping[str, AccountTerms]
) -> JournalChange:
    """The record's change; ``terms`` holds every account of ``accounts_named(body)``."""
    if body["kind"] == ACCOUNT_OPENED:
        account = body["account"]
        side = NormalSide[account["normal_side"]]
        created = instant(account["created_at"])
        return JournalChange(
            row,
            transfer_id="",
            account_id=account["id"],
            ok=True,
            created_at=created,
            balances=(Balance(account["id"], account["currency"], side, as_of=created),),
        )
    transfer = body["transfer"]
    last: dict[str, Mapping[str, Any]] = {}
    for entry in body["entries"]:  # (account_id, sequence) order: the last one wins
        last[entry["account_id"]] = entry
    balances = []
    for account_id in sorted(last):
        entry = last[account_id]
        account = terms[account_id]
        balances.append(
            Balance(
                account_id,
                account.currency,
                account.normal_side,
                entry["debits_posted"],
                entry["credits_posted"],
                entry["debits_pending"],
                entry["credits_pending"],
                instant(entry["created_at"]),
                entry["sequence"],
            )
        )
    return JournalChange(
        row,
        transfer_id=transfer["id"],
        account_id="",
        ok=bool(transfer["ok"]),
        created_at=instant(transfer["created_at"]),
        balances=tuple(balances),
    )
