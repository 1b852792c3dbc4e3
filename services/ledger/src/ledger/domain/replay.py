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
from datetime import datetime
from typing import Any, TypeVar

from chassis.kernel.audit import Requester

from ledger.domain.journal import ACCOUNT_OPENED, TRANSFER, instant
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
    """Layout 1's ``{"client_id", "customer_id", "request_id"}`` or layout 2's list of them."""
    if value is None:
        return None
    if isinstance(value, list) and len(value) == 3:
        value = dict(zip(("client_id", "customer_id", "request_id"), value, strict=True))
    if not isinstance(value, Mapping):
        raise BadBody(f"requester {value!r} is neither an object nor three fields")
    client_id, customer_id, request_id = (
        value.get("client_id"),
        value.get("customer_id"),
        value.get("request_id"),
    )
    if not client_id:
        return None
    if not (
        isinstance(client_id, str)
        and isinstance(request_id, str)
        and isinstance(customer_id, str | None)
    ):
        raise BadBody(f"requester {value!r} is not text")
    return Requester(client_id, customer_id or None, request_id)


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
    transfer_id, ok, fingerprint = row["id"], row["ok"], row["fingerprint"]
    if not (isinstance(transfer_id, str) and isinstance(ok, bool) and isinstance(fingerprint, str)):
        raise BadBody(f"transfer {transfer_id!r}: its id, ok or fingerprint is not what it must be")
    return TransferRecord(
        id=row["id"],
        kind=_enum(TransferKind, row["kind"]),
        fingerprint=fingerprint,
        ok=ok,
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
    if not isinstance(row["account_id"], str):
        raise BadBody(f"an entry of transfer {row['transfer_id']} names no account")
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


# Layout 2's positions (JOURNAL.md): a transfer row's columns, and an entry's (its
# transfer id is the body's own).
TRANSFER_FIELDS = (
    "id",
    "kind",
    "ok",
    "reason",
    "message",
    "fingerprint",
    "legs",
    "pending_transfer_id",
    "reversed_transfer_id",
    "expires_at",
    "metadata",
    "created_at",
    "requester",
)
ENTRY_FIELDS = (
    "account_id",
    "sequence",
    "kind",
    "entry_type",
    "direction",
    "amount",
    "debits_posted",
    "credits_posted",
    "debits_pending",
    "credits_pending",
    "created_at",
)


def _named(value: object, names: tuple[str, ...], what: str) -> dict[str, Any]:
    if not isinstance(value, list) or len(value) != len(names):
        raise BadBody(f"{what} is not a list of {len(names)} fields")
    return dict(zip(names, value, strict=True))


Holds = tuple[tuple[tuple[str, datetime | None], ...], tuple[str, ...]]


def _holds(opened: object, closed: object) -> Holds:
    """The holds a transfer opened (id, expiry) and closed (id); None is none."""
    opened, closed = opened or [], closed or []
    if not isinstance(opened, list) or not isinstance(closed, list):
        raise BadBody(f"holds {opened!r} and {closed!r} are not lists")
    return (
        tuple((str(held), instant(expiry)) for held, expiry in opened),
        tuple(str(held) for held in closed),
    )


def _positional_transfer(value: list[Any]) -> TransferChange:
    """Layout 2: ``["transfer", TRANSFER, [ENTRY...], [[id, expires_at]...], [id...]]``."""
    if len(value) != 5:
        raise BadBody("a transfer body is not a list of 5 members")
    _, transfer, entries, opened, closed = value
    record = _record(_named(transfer, TRANSFER_FIELDS, "a transfer row"))
    rows = tuple(
        _entry(
            {**_named(entry, ENTRY_FIELDS, f"an entry of {record.id}"), "transfer_id": record.id}
        )
        for entry in entries
    )
    holds_opened, holds_closed = _holds(opened, closed)
    return TransferChange(record, rows, holds_opened, holds_closed)


def _keyed_transfer(value: Mapping[str, Any]) -> TransferChange:
    """Layout 1 (keyed objects), as written before layout 2; still read."""
    holds = value.get("holds") or {}
    holds_opened, holds_closed = _holds(holds.get("opened"), holds.get("closed"))
    return TransferChange(
        record=_record(value["transfer"]),
        entries=tuple(_entry(row) for row in value.get("entries") or ()),
        holds_opened=holds_opened,
        holds_closed=holds_closed,
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
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as error:
        # OverflowError: an instant past what a datetime can hold.
        raise BadBody(f"{type(error).__name__}: {error}") from error
    raise BadBody(f"unknown kind {kind!r}")
