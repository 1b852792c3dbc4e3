"""Domain events -> ``astra.ledger.v1`` event messages, as outbox rows."""

from __future__ import annotations

from astra.ledger.v1 import events_pb2 as ev
from chassis.events.writer import OutboxMessage
from chassis.kernel.money import currency
from chassis.protos import set_timestamp
from google.protobuf.message import Message

from ledger.adapters.protos import account_to_pb, fill_balance, fill_leg
from ledger.domain.events import (
    AccountOpened,
    JournalCheckpointed,
    LedgerEvent,
    TransferApplied,
)
from ledger.domain.model import TransferKind

EVENT_SOURCE = "//astra.ledger"


TransferEventMessage = (
    ev.TransferPosted
    | ev.PendingTransferCreated
    | ev.PendingTransferPosted
    | ev.PendingTransferVoided
    | ev.PendingTransferExpired
    | ev.TransferReversed
)


def _transfer_event(event: TransferApplied) -> TransferEventMessage:
    kind = event.kind
    message: TransferEventMessage
    if kind is TransferKind.MOVEMENT:
        message = ev.TransferPosted(transfer_id=event.transfer_id)
    elif kind is TransferKind.PENDING:
        message = ev.PendingTransferCreated(transfer_id=event.transfer_id)
        set_timestamp(message.expire_time, event.expires_at)
    elif kind is TransferKind.POST_PENDING:
        message = ev.PendingTransferPosted(
            transfer_id=event.transfer_id, pending_transfer_id=event.pending_transfer_id
        )
    elif kind is TransferKind.VOID_PENDING:
        message = ev.PendingTransferVoided(
            transfer_id=event.transfer_id, pending_transfer_id=event.pending_transfer_id
        )
    elif kind is TransferKind.EXPIRE_PENDING:
        message = ev.PendingTransferExpired(
            transfer_id=event.transfer_id, pending_transfer_id=event.pending_transfer_id
        )
    else:
        message = ev.TransferReversed(
            transfer_id=event.transfer_id, reversed_transfer_id=event.reversed_transfer_id
        )
    # Filled in place: building submessages and passing them in would copy each one.
    for leg in event.legs:
        fill_leg(message.legs.add(), leg)
    for balance in event.balances:
        fill_balance(message.balances.add(), balance)
    if event.metadata and not isinstance(message, ev.PendingTransferExpired):
        message.metadata.update(event.metadata)
    set_timestamp(message.occur_time, event.occurred_at)
    return message


def to_outbox_message(event: LedgerEvent) -> OutboxMessage:
    message: Message
    if isinstance(event, AccountOpened):
        account = event.account
        message = ev.AccountOpened(
            account=account_to_pb(account, currency(account.currency).exponent)
        )
        set_timestamp(message.occur_time, event.occurred_at)
    elif isinstance(event, JournalCheckpointed):
        message = ev.JournalCheckpointed(sequence=event.sequence, hash=event.hash)
        set_timestamp(message.occur_time, event.occurred_at)
    else:
        message = _transfer_event(event)
    return OutboxMessage(
        event_type=message.DESCRIPTOR.full_name,
        aggregate_id=event.aggregate_id,
        payload=message.SerializeToString(),
        occurred_at=event.occurred_at,
    )
