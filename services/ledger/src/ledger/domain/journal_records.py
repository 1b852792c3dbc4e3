"""What each change writes, as the journal's record bodies (``ledger.domain.journal`` encodes).

Pure: from the domain objects a write already holds (an account opened, a batch's
outcome) to the spec's bodies, one per change in commit order. A body holds
exactly the rows the change wrote, column by column, so an import can write them
back as they are: instants as integer microseconds (UTC), enums by their names,
empty optional text as null (as the columns store it), the requester inlined.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chassis.kernel.audit import Requester

from ledger.domain.batch import BatchOutcome
from ledger.domain.journal import ACCOUNT_OPENED, TRANSFER, chain, encode_built, micros
from ledger.domain.model import Account, Entry, Leg, Metadata, TransferRecord


@dataclass(frozen=True, slots=True)
class JournalRow:
    """One stored journal record. ``recorded_at`` is informational (not hashed)."""

    sequence: int
    kind: str
    body: bytes
    prev_hash: bytes
    hash: bytes
    recorded_at: datetime | None = None

    def checked(self) -> tuple[int, bytes, bytes, bytes]:
        """As ``ledger.domain.journal.first_break`` reads a record."""
        return self.sequence, self.prev_hash, self.hash, self.body


@dataclass(frozen=True, slots=True)
class JournalHead:
    """The chain's head: the last record's sequence and hash (0 and GENESIS when empty)."""

    sequence: int
    hash: bytes


def _instant(value: datetime | None) -> int | None:
    return micros(value) if value is not None else None


# Keys are written in sorted order throughout: the canonical encoding sorts them, and an
# already sorted dict is the cheapest to sort (every write encodes a body per row).


def _requester(requester: Requester | None) -> dict[str, Any] | None:
    if requester is None:
        return None
    return {
        "client_id": requester.client_id,
        "customer_id": requester.customer_id,
        "request_id": requester.request_id,
    }


def _metadata(metadata: Metadata) -> dict[str, str] | None:
    return dict(metadata) if metadata else None


def _legs(legs: Iterable[Leg]) -> list[list[Any]]:
    return [
        [leg.account_id, leg.direction.name if leg.direction else None, leg.amount, leg.currency]
        for leg in legs
    ]


def account_opened_body(account: Account) -> dict[str, Any]:
    """The ``accounts`` row as opened, without its running state: the sums, the version
    (``entry_sequence``), ``last_entry_at`` and the seal follow from the entries."""
    return {
        "account": {
            "created_at": _instant(account.created_at),
            "credits_must_not_exceed_debits": account.credits_must_not_exceed_debits,
            "currency": account.currency,
            "customer_id": account.customer_id,
            "debits_must_not_exceed_credits": account.debits_must_not_exceed_credits,
            "external_reference": account.external_reference,
            "fingerprint": account.fingerprint,
            "id": account.id,
            "metadata": _metadata(account.metadata),
            "normal_side": account.normal_side.name,
        },
        "kind": ACCOUNT_OPENED,
        "requester": _requester(account.created_by),
    }


# A transfer body is positional (JOURNAL.md, "transfer", layout 2): every write
# encodes one per row, and arrays cost a fraction of keyed objects to build, encode
# and store. The positions are the spec's; ``ledger.domain.replay`` reads them back.


def transfer_row_fields(record: TransferRecord, created_at: int | None = None) -> list[Any]:
    """The ``transfers`` row, in the spec's order (``created_at``: microseconds, if known)."""
    return [
        record.id,
        record.kind.name,
        record.ok,
        record.reason or None,
        record.message or None,
        record.fingerprint,
        _legs(record.legs),
        record.pending_transfer_id or None,
        record.reversed_transfer_id or None,
        _instant(record.expires_at),
        _metadata(record.metadata),
        micros(record.created_at) if created_at is None else created_at,
        _requester_fields(record.created_by),
    ]


def entry_fields(entry: Entry, created_at: int | None = None) -> list[Any]:
    """An ``entries`` row of the transfer, in the spec's order (its transfer id is the body's)."""
    return [
        entry.account_id,
        entry.sequence,
        entry.kind.name,
        entry.entry_type.name,
        entry.direction.name,
        entry.amount,
        entry.debits_posted,
        entry.credits_posted,
        entry.debits_pending,
        entry.credits_pending,
        micros(entry.created_at) if created_at is None else created_at,
    ]


def _requester_fields(requester: Requester | None) -> list[str | None] | None:
    if requester is None:
        return None
    return [requester.client_id, requester.customer_id, requester.request_id]


def transfer_bodies(outcome: BatchOutcome) -> list[list[Any]]:
    """One body per record the outcome writes (applied, refused and kept, expiries), in order.

    A hold is opened by its pending transfer and closed by the transfer that resolved
    it, even when both are in one batch (the write then never indexes it): replaying
    the records one by one leaves the same open holds.
    """
    # A batch is decided at one instant: convert each distinct instant once.
    instants: dict[datetime, int] = {}

    def stamp(instant: datetime) -> int:
        value = instants.get(instant)
        if value is None:
            value = instants[instant] = micros(instant)
        return value

    entries: dict[str, list[Entry]] = {}
    for entry in outcome.entries:
        entries.setdefault(entry.transfer_id, []).append(entry)
    opened = {hold.id: hold.expires_at for hold in outcome.opened_holds}
    closed = set(outcome.closed_holds)
    bodies = []
    for record in outcome.records:
        own = entries.get(record.id, [])
        if len(own) > 1:
            own.sort(key=_entry_order)
        closes = record.pending_transfer_id
        bodies.append(
            [
                TRANSFER,
                transfer_row_fields(record, stamp(record.created_at)),
                [entry_fields(e, stamp(e.created_at)) for e in own],
                [[record.id, _instant(opened[record.id])]] if record.id in opened else [],
                [closes] if record.ok and closes and closes in closed else [],
            ]
        )
    return bodies


def _entry_order(entry: Entry) -> tuple[str, int]:
    return entry.account_id, entry.sequence


def encoded(bodies: Iterable[object]) -> list[bytes]:
    """The canonical bytes of each body built here (``ledger.domain.journal.encode_built``)."""
    return [encode_built(body) for body in bodies]


def appended(
    head: JournalHead, records: Sequence[tuple[str, bytes]], recorded_at: datetime
) -> list[JournalRow]:
    """The rows that append encoded ``(kind, body)`` records after ``head``, chained.

    Encode before taking the head's lock, chain under it: hashing is the only work
    that has to wait for the head.
    """
    links = chain(head.sequence, head.hash, [body for _, body in records])
    return [
        JournalRow(link.sequence, kind, body, link.prev_hash, link.hash, recorded_at)
        for link, (kind, body) in zip(links, records, strict=True)
    ]
