"""Ledger domain events -> ``astra.ledger.v1`` event messages, every kind (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from astra.ledger.v1 import events_pb2 as ev
from astra.ledger.v1 import ledger_pb2 as pb
from google.protobuf.message import Message
from ledger.adapters.events import to_outbox_message
from ledger.domain.events import JournalCheckpointed, TransferApplied
from ledger.domain.model import Balance, Direction, Leg, NormalSide, TransferKind

AT = datetime(2026, 11, 23, 12, 30, 15, 250_000, tzinfo=UTC)
LEGS = (
    Leg("acct_alice", Direction.DEBIT, 1_250, "EUR"),
    Leg("acct_bob", Direction.CREDIT, 1_250, "EUR"),
)
BALANCES = (
    Balance(
        "acct_alice", "EUR", NormalSide.CREDIT, debits_posted=1_250, credits_posted=10_000, as_of=AT
    ),
    Balance(
        "acct_bob", "EUR", NormalSide.CREDIT, credits_posted=1_250, credits_pending=7, as_of=AT
    ),
)


def _event(kind: TransferKind, **extra: object) -> TransferApplied:
    return TransferApplied(
        kind=kind,
        transfer_id="tr_2",
        legs=LEGS,
        balances=BALANCES,
        metadata=(("order", "o-17"),),
        occurred_at=AT,
        **extra,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("kind", "extra", "message_type", "aggregate_id"),
    [
        (TransferKind.MOVEMENT, {}, ev.TransferPosted, "tr_2"),
        (
            TransferKind.PENDING,
            {"expires_at": AT + timedelta(minutes=5)},
            ev.PendingTransferCreated,
            "tr_2",
        ),
        (
            TransferKind.POST_PENDING,
            {"pending_transfer_id": "tr_1"},
            ev.PendingTransferPosted,
            "tr_1",
        ),
        (
            TransferKind.VOID_PENDING,
            {"pending_transfer_id": "tr_1"},
            ev.PendingTransferVoided,
            "tr_1",
        ),
        (
            TransferKind.EXPIRE_PENDING,
            {"pending_transfer_id": "tr_1"},
            ev.PendingTransferExpired,
            "tr_1",
        ),
        (TransferKind.REVERSAL, {"reversed_transfer_id": "tr_1"}, ev.TransferReversed, "tr_1"),
    ],
)
def test_each_transfer_kind_becomes_its_event_with_everything_a_subscriber_needs(
    kind: TransferKind, extra: dict[str, object], message_type: type[Message], aggregate_id: str
) -> None:
    outbox = to_outbox_message(_event(kind, **extra))

    assert outbox.event_type == message_type.DESCRIPTOR.full_name
    assert outbox.aggregate_id == aggregate_id
    message: Any = message_type.FromString(outbox.payload)
    assert message.transfer_id == "tr_2"
    assert [(leg.account_id, leg.direction, leg.amount, leg.currency) for leg in message.legs] == [
        ("acct_alice", pb.DIRECTION_DEBIT, 1_250, "EUR"),
        ("acct_bob", pb.DIRECTION_CREDIT, 1_250, "EUR"),
    ]
    alice, bob = message.balances
    assert (alice.account_id, alice.posted, alice.available) == ("acct_alice", 8_750, 8_750)
    assert (bob.posted, bob.pending, bob.credits_pending) == (1_250, 7, 7)
    assert alice.as_of.ToDatetime(tzinfo=UTC) == AT
    assert message.occur_time.ToDatetime(tzinfo=UTC) == AT
    for field, value in extra.items():
        if field == "expires_at":
            assert message.expire_time.ToDatetime(tzinfo=UTC) == value
        else:
            assert getattr(message, field) == value
    if kind is not TransferKind.EXPIRE_PENDING:  # an expiry is the ledger's, no client's metadata
        assert dict(message.metadata) == {"order": "o-17"}


def test_a_journal_checkpoint_is_published_with_its_sequence_and_hash() -> None:
    digest = bytes(range(32))
    message = to_outbox_message(JournalCheckpointed(41, digest, AT))
    assert message.event_type == "astra.ledger.v1.JournalCheckpointed"
    assert message.aggregate_id == "journal"
    event = ev.JournalCheckpointed.FromString(message.payload)
    assert (event.sequence, event.hash, event.occur_time.ToDatetime(UTC)) == (41, digest, AT)
