"""Between ``astra.ledger.v1`` messages and the ledger's domain objects.

Conversions do not judge: a value the domain cannot use (an unspecified enum, a
missing operation) becomes None, and domain validation reports it with its
field path. The one exception is a Duration outside the range of valid
Durations, which has no Python value to become: it is refused at once, naming
its field.
"""

from __future__ import annotations

from collections.abc import Iterable

from astra.ledger.v1 import ledger_pb2 as pb
from chassis.kernel.errors import InvalidArgument
from chassis.protos import from_duration, set_requester, set_timestamp

from ledger.domain.journal import ACCOUNT_OPENED
from ledger.domain.journal_changes import JournalChange
from ledger.domain.model import (
    Account,
    AccountSpec,
    Balance,
    Direction,
    Entry,
    ItemResult,
    Leg,
    MovementOp,
    NormalSide,
    Operation,
    PendingOp,
    PostPendingOp,
    ReversalOp,
    TransferRecord,
    TransferRequest,
    VoidPendingOp,
    metadata_of,
)

_DIRECTIONS = {pb.DIRECTION_DEBIT: Direction.DEBIT, pb.DIRECTION_CREDIT: Direction.CREDIT}
_SIDES = {pb.NORMAL_SIDE_DEBIT: NormalSide.DEBIT, pb.NORMAL_SIDE_CREDIT: NormalSide.CREDIT}


# --- requests -> domain ---------------------------------------------------------


def legs_from_pb(legs: Iterable[pb.Leg]) -> tuple[Leg, ...]:
    return tuple(
        Leg(leg.account_id, _DIRECTIONS.get(leg.direction), leg.amount, leg.currency)
        for leg in legs
    )


def account_spec_from_pb(account: pb.Account) -> AccountSpec:
    return AccountSpec(
        id=account.id,
        currency=account.currency,
        normal_side=_SIDES.get(account.normal_side),
        debits_must_not_exceed_credits=account.debits_must_not_exceed_credits,
        credits_must_not_exceed_debits=account.credits_must_not_exceed_debits,
        metadata=metadata_of(dict(account.metadata)),
        external_reference=account.external_reference,
        customer_id=account.customer_id,
    )


def transfer_request_from_pb(spec: pb.TransferSpec) -> TransferRequest:
    """The request ``spec`` asks for; fields of a refusal are named from the spec."""
    which = spec.WhichOneof("operation")
    operation: Operation | None = None
    if which == "movement":
        operation = MovementOp(legs_from_pb(spec.movement.legs))
    elif which == "pending":
        timeout = (
            from_duration(spec.pending.timeout, "pending.timeout")
            if spec.pending.HasField("timeout")
            else None
        )
        operation = PendingOp(legs_from_pb(spec.pending.legs), timeout)
    elif which == "post_pending":
        operation = PostPendingOp(
            spec.post_pending.pending_transfer_id, legs_from_pb(spec.post_pending.legs)
        )
    elif which == "void_pending":
        operation = VoidPendingOp(spec.void_pending.pending_transfer_id)
    elif which == "reversal":
        operation = ReversalOp(spec.reversal.transfer_id, spec.reversal.shortfall_account_id)
    metadata = metadata_of(dict(spec.metadata)) if spec.metadata else ()
    return TransferRequest(spec.id, operation, spec.linked, metadata)


def transfer_requests_from_pb(
    specs: Iterable[pb.TransferSpec], path: str = "transfers"
) -> list[TransferRequest]:
    """Each spec's request; a refusal names the item (``transfers[3].pending.timeout``)."""
    requests = []
    for index, spec in enumerate(specs):
        try:
            requests.append(transfer_request_from_pb(spec))
        except InvalidArgument as refused:
            raise refused.under(f"{path}[{index}]") from None
    return requests


# --- domain -> messages -----------------------------------------------------------


def fill_leg(target: pb.Leg, leg: Leg) -> None:
    """Write ``leg`` into ``target``: a repeated field's ``add()`` avoids building and copying."""
    target.account_id = leg.account_id
    target.direction = int(leg.direction or 0)  # type: ignore[assignment]
    target.amount = leg.amount
    target.currency = leg.currency


def leg_to_pb(leg: Leg) -> pb.Leg:
    message = pb.Leg()
    fill_leg(message, leg)
    return message


def fill_balance(target: pb.Balance, balance: Balance) -> None:
    target.account_id = balance.account_id
    target.currency = balance.currency
    target.debits_posted = balance.debits_posted
    target.credits_posted = balance.credits_posted
    target.debits_pending = balance.debits_pending
    target.credits_pending = balance.credits_pending
    target.posted = balance.posted
    target.pending = balance.pending
    target.available = balance.available
    set_timestamp(target.as_of, balance.as_of)
    target.version = balance.version


def balance_to_pb(balance: Balance) -> pb.Balance:
    message = pb.Balance()
    fill_balance(message, balance)
    return message


def account_to_pb(account: Account, exponent: int) -> pb.Account:
    message = pb.Account(
        id=account.id,
        currency=account.currency,
        currency_exponent=exponent,
        normal_side=int(account.normal_side),  # type: ignore[arg-type]
        debits_must_not_exceed_credits=account.debits_must_not_exceed_credits,
        credits_must_not_exceed_debits=account.credits_must_not_exceed_debits,
        metadata=dict(account.metadata),
        external_reference=account.external_reference,
        customer_id=account.customer_id,
        balance=balance_to_pb(account.balance(account.last_entry_at or account.created_at)),
    )
    set_timestamp(message.create_time, account.created_at)
    set_requester(message.created_by, account.created_by)
    return message


def transfer_to_pb(record: TransferRecord) -> pb.Transfer:
    message = pb.Transfer(
        id=record.id,
        kind=int(record.kind),  # type: ignore[arg-type]
        status=int(record.status),  # type: ignore[arg-type]
        legs=[leg_to_pb(leg) for leg in record.legs],
        pending_transfer_id=record.pending_transfer_id,
        reversed_transfer_id=record.reversed_transfer_id,
        resolved_by_transfer_id=record.resolved_by,
        reversed_by_transfer_id=record.reversed_by,
        metadata=dict(record.metadata),
    )
    set_timestamp(message.expire_time, record.expires_at)
    set_timestamp(message.create_time, record.created_at)
    set_requester(message.created_by, record.created_by)
    return message


def results_to_pb(results: Iterable[ItemResult]) -> list[pb.TransferResult]:
    out = []
    stamp_for: dict[object, object] = {}
    for r in results:
        message = pb.TransferResult(
            id=r.id,
            ok=r.ok,
            reason=r.reason,
            message=r.message,
            replayed=r.replayed,
            kind=int(r.kind or 0),  # type: ignore[arg-type]
            status=int(r.status or 0),  # type: ignore[arg-type]
        )
        if r.created_at is not None:
            # Most items of a batch share one instant: convert it once.
            stamp = stamp_for.get(r.created_at)
            if stamp is None:
                holder = pb.TransferResult()
                set_timestamp(holder.create_time, r.created_at)
                stamp = stamp_for[r.created_at] = holder.create_time
            message.create_time.CopyFrom(stamp)  # type: ignore[arg-type]
        out.append(message)
    return out


def entry_to_pb(entry: Entry, account: Account) -> pb.Entry:
    balance = account.balance_after(entry, entry.created_at)
    message = pb.Entry(
        sequence=entry.sequence,
        account_id=entry.account_id,
        transfer_id=entry.transfer_id,
        kind=int(entry.kind),  # type: ignore[arg-type]
        direction=int(entry.direction),  # type: ignore[arg-type]
        amount=entry.amount,
        type=int(entry.entry_type),  # type: ignore[arg-type]
        balance_after=balance_to_pb(balance),
        balance_before=balance_to_pb(account.balance_before(entry)),
    )
    set_timestamp(message.create_time, entry.created_at)
    return message


_RECORD_KINDS = {
    ACCOUNT_OPENED: pb.JOURNAL_RECORD_KIND_ACCOUNT_OPENED,
    "transfer": pb.JOURNAL_RECORD_KIND_TRANSFER,
}


def journal_record_to_pb(change: JournalChange, include_body: bool = False) -> pb.JournalRecord:
    row = change.row
    message = pb.JournalRecord(
        sequence=row.sequence,
        kind=_RECORD_KINDS.get(row.kind, pb.JOURNAL_RECORD_KIND_UNSPECIFIED),
        hash=row.hash,
        prev_hash=row.prev_hash,
        transfer_id=change.transfer_id,
        account_id=change.account_id,
        ok=change.ok,
        body=row.body if include_body else b"",
    )
    if row.recorded_at is not None:
        set_timestamp(message.record_time, row.recorded_at)
    set_timestamp(message.create_time, change.created_at)
    for balance in change.balances:
        fill_balance(message.balances.add(), balance)
    return message
