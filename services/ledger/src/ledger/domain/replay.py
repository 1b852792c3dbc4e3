"""A journal record's body read back into the rows it wrote (for import and replay).

A body holds exactly the rows its change wrote (services/ledger/JOURNAL.md):
an account as opened, or a transfer row with the entries it wrote and the
holds it opened and closed. Reading it back gives the domain's values, which
the repository writes as they are. Pure: no I/O.

Enums are read by their stable names (``"DEBIT"``); for the columns the
tables store as text (a transfer's ``legs``, ``metadata``) both the stored
text and its structured form are accepted, so the reader does not depend on
which of the two the writer chose.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from chassis.kernel.audit import Requester

from ledger.domain.journal import ACCOUNT_OPENED, TRANSFER
from ledger.domain.model import (
    Account,
    Direction,
    Entry,
    EntryType,
    Leg,
    Metadata,
    NormalSide,
    TransferKind,
    TransferRecord,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
E = TypeVar("E", bound=enum.IntEnum)


class BadBody(ValueError):
    """A body that is not one of the two kinds, or lacks what its kind must hold."""


@dataclass(frozen=True, slots=True)
class AccountOpenedChange:
    account: Account


@dataclass(frozen=True, slots=True)
class TransferChange:
    record: TransferRecord
    entries: tuple[Entry, ...]
    # (transfer id, expiry or None) of each hold it opened; ids of the holds it closed.
    holds_opened: tuple[tuple[str, datetime | None], ...]
    holds_closed: tuple[str, ...]


Change = AccountOpenedChange | TransferChange


def instant(value: int | None) -> datetime | None:
    """Integer microseconds since the Unix epoch -> an aware UTC instant (the inverse of
    ``journal.micros``)."""
    if value is None:
        return None
    return _EPOCH + timedelta(microseconds=value)


def _required_instant(value: int | None, what: str) -> datetime:
    at = instant(value)
    if at is None:
        raise BadBody(f"{what} has no instant")
    return at


def _enum(kind: type[E], value: object) -> E:
    if isinstance(value, str):
        return kind[value]
    if isinstance(value, int) and not isinstance(value, bool):
        return kind(value)
    raise BadBody(f"{value!r} is not a {kind.__name__}")


def _metadata(value: object) -> Metadata:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, Mapping):
        raise BadBody(f"metadata {value!r} is not an object")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise BadBody(f"metadata {value!r} is not an object of strings")
    return tuple(sorted(value.items()))


def _integer(value: object, what: str) -> int:
    """A JSON integer (not a boolean, not text, not a float)."""
    if type(value) is not int:
        raise BadBody(f"{what} {value!r} is not an integer")
    return value


def _legs(value: object) -> tuple[Leg, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):  # the column's own text: account:direction:amount:currency;...
        parts = [part.split(":") for part in value.split(";")]
    elif isinstance(value, list):
        parts = [
            [leg["account_id"], leg["direction"], leg["amount"], leg["currency"]]
            if isinstance(leg, Mapping)
            else list(leg)
            for leg in value
        ]
    else:
        raise BadBody(f"legs {value!r} are neither text nor a list")
    legs = []
    for account_id, direction, amount, currency in parts:
        side: object = (
            int(direction) if isinstance(direction, str) and direction.isdigit() else direction
        )
        # A leg the column stored without a direction (0) has none.
        known = None if side in (None, 0) else _enum(Direction, side)
        legs.append(Leg(str(account_id), known, int(amount), str(currency)))
    return tuple(legs)


def _requester(value: object) -> Requester | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise BadBody(f"requester {value!r} is not an object")
    if not value.get("client_id"):
        return None
    return Requester(value["client_id"], value.get("customer_id") or None, value["request_id"])


def _account(row: Mapping[str, Any], requester: object) -> Account:
    return Account(
        id=row["id"],
        currency=row["currency"],
        normal_side=_enum(NormalSide, row["normal_side"]),
        debits_must_not_exceed_credits=bool(row["debits_must_not_exceed_credits"]),
        credits_must_not_exceed_debits=bool(row["credits_must_not_exceed_debits"]),
        metadata=_metadata(row.get("metadata")),
        external_reference=row.get("external_reference") or "",
        customer_id=row.get("customer_id") or "",
        fingerprint=row["fingerprint"],
        created_at=_required_instant(row["created_at"], f"account {row['id']}"),
        created_by=_requester(requester),
    )


def _record(row: Mapping[str, Any]) -> TransferRecord:
    return TransferRecord(
        id=row["id"],
        kind=_enum(TransferKind, row["kind"]),
        fingerprint=row["fingerprint"],
        ok=bool(row["ok"]),
        created_at=_required_instant(row["created_at"], f"transfer {row['id']}"),
        reason=row.get("reason") or "",
        message=row.get("message") or "",
        legs=_legs(row.get("legs")),
        pending_transfer_id=row.get("pending_transfer_id") or "",
        reversed_transfer_id=row.get("reversed_transfer_id") or "",
        expires_at=instant(row.get("expires_at")),
        metadata=_metadata(row.get("metadata")),
        created_by=_requester(row.get("requester")),
    )


def _entry(row: Mapping[str, Any]) -> Entry:
    return Entry(
        account_id=row["account_id"],
        sequence=_integer(row["sequence"], "an entry's sequence"),
        transfer_id=row["transfer_id"],
        kind=_enum(TransferKind, row["kind"]),
        entry_type=_enum(EntryType, row["entry_type"]),
        direction=_enum(Direction, row["direction"]),
        amount=_integer(row["amount"], "an entry's amount"),
        debits_posted=_integer(row["debits_posted"], "an entry's debits_posted"),
        credits_posted=_integer(row["credits_posted"], "an entry's credits_posted"),
        debits_pending=_integer(row["debits_pending"], "an entry's debits_pending"),
        credits_pending=_integer(row["credits_pending"], "an entry's credits_pending"),
        created_at=_required_instant(row["created_at"], f"entry {row['account_id']}"),
    )


def _requester_fields(value: object) -> Requester | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 3:
        raise BadBody(f"requester {value!r} is not [client_id, customer_id, request_id]")
    client_id, customer_id, request_id = value
    if not client_id:
        return None
    return Requester(str(client_id), str(customer_id) if customer_id else None, str(request_id))


def _fields(value: object, count: int, what: str) -> list[Any]:
    if not isinstance(value, list) or len(value) != count:
        raise BadBody(f"{what} is not a list of {count} fields")
    return value


def _positional_transfer(value: list[Any]) -> TransferChange:
    """Layout 2: ``["transfer", TRANSFER, [ENTRY...], [[id, expires_at]...], [id...]]``."""
    _, transfer, entries, opened, closed = _fields(value, 5, "a transfer body")
    (
        transfer_id,
        kind,
        ok,
        reason,
        message,
        fingerprint,
        legs,
        pending_transfer_id,
        reversed_transfer_id,
        expires_at,
        metadata,
        created_at,
        requester,
    ) = _fields(transfer, 13, "a transfer row")
    if not (isinstance(transfer_id, str) and isinstance(ok, bool) and isinstance(fingerprint, str)):
        raise BadBody(f"transfer {transfer_id!r}: its id, ok or fingerprint is not what it must be")
    record = TransferRecord(
        id=transfer_id,
        kind=_enum(TransferKind, kind),
        fingerprint=fingerprint,
        ok=ok,
        created_at=_required_instant(created_at, f"transfer {transfer_id}"),
        reason=reason or "",
        message=message or "",
        legs=_legs(legs),
        pending_transfer_id=pending_transfer_id or "",
        reversed_transfer_id=reversed_transfer_id or "",
        expires_at=instant(expires_at),
        metadata=_metadata(metadata),
        created_by=_requester_fields(requester),
    )
    rows = []
    for entry in entries:
        (
            account_id,
            sequence,
            entry_kind,
            entry_type,
            direction,
            amount,
            debits_posted,
            credits_posted,
            debits_pending,
            credits_pending,
            entry_created_at,
        ) = _fields(entry, 11, f"an entry of transfer {transfer_id}")
        if not isinstance(account_id, str):
            raise BadBody(f"an entry of transfer {transfer_id} names no account")
        rows.append(
            Entry(
                account_id=account_id,
                sequence=_integer(sequence, "an entry's sequence"),
                transfer_id=transfer_id,
                kind=_enum(TransferKind, entry_kind),
                entry_type=_enum(EntryType, entry_type),
                direction=_enum(Direction, direction),
                amount=_integer(amount, "an entry's amount"),
                debits_posted=_integer(debits_posted, "an entry's debits_posted"),
                credits_posted=_integer(credits_posted, "an entry's credits_posted"),
                debits_pending=_integer(debits_pending, "an entry's debits_pending"),
                credits_pending=_integer(credits_pending, "an entry's credits_pending"),
                created_at=_required_instant(entry_created_at, f"entry {account_id}"),
            )
        )
    return TransferChange(
        record=record,
        entries=tuple(rows),
        holds_opened=tuple((str(held), instant(expiry)) for held, expiry in opened),
        holds_closed=tuple(str(held) for held in closed),
    )


def _keyed_transfer(value: Mapping[str, Any]) -> TransferChange:
    """Layout 1 (keyed objects), as written before layout 2; still read."""
    holds = value.get("holds") or {}
    return TransferChange(
        record=_record(value["transfer"]),
        entries=tuple(_entry(row) for row in value.get("entries") or ()),
        holds_opened=tuple(
            (str(transfer_id), instant(expires_at))
            for transfer_id, expires_at in holds.get("opened") or ()
        ),
        holds_closed=tuple(str(transfer_id) for transfer_id in holds.get("closed") or ()),
    )


def kind_of(value: object) -> str | None:
    """The kind a decoded body says it is (either layout), or None for no body at all."""
    if isinstance(value, list) and value and isinstance(value[0], str):
        return value[0]
    if isinstance(value, dict) and isinstance(value.get("kind"), str):
        return str(value["kind"])
    return None


def read_body(body: bytes) -> Change:
    """The rows a record's body holds (a transfer in either layout)."""
    try:
        value = json.loads(body)
        if isinstance(value, list):
            kind = value[0] if value else None
            if kind == TRANSFER:
                return _positional_transfer(value)
        else:
            kind = value["kind"]
            if kind == ACCOUNT_OPENED:
                # Built directly, not by Account.open: a replayed account publishes no event.
                return AccountOpenedChange(_account(value["account"], value.get("requester")))
            if kind == TRANSFER:
                return _keyed_transfer(value)
    except BadBody:
        raise
    except (ValueError, KeyError, TypeError, OverflowError) as error:
        # OverflowError: an instant past what a datetime can hold.
        raise BadBody(f"{type(error).__name__}: {error}") from error
    raise BadBody(f"unknown kind {kind!r}")
