"""Balances carry the account's version, so a consumer of ledger events keeps the newest
snapshot whatever order the events arrive in (two transfers on one account need not share an
ordering key)."""

from __future__ import annotations

import random

import pytest
from astra.ledger.v1 import events_pb2
from astra.ledger.v1 import ledger_pb2 as pb
from astra.ledger.v1.ledger_pb2_grpc import LedgerServiceStub
from chassis.events.decoding import decode
from google.protobuf.duration_pb2 import Duration
from ledger.bootstrap import Ledger
from sqlalchemy import text

pytestmark = pytest.mark.integration

D, C = pb.DIRECTION_DEBIT, pb.DIRECTION_CREDIT


def legs(src: str, dst: str, amount: int) -> list[pb.Leg]:
    return [
        pb.Leg(account_id=src, direction=D, amount=amount, currency="EUR"),
        pb.Leg(account_id=dst, direction=C, amount=amount, currency="EUR"),
    ]


def event_balances(ledger: Ledger) -> list[pb.Balance]:
    """Every balance snapshot in the outbox's events, in commit order."""
    with ledger.engine.connect() as connection:
        rows = connection.execute(text("SELECT event_type, payload FROM outbox ORDER BY id"))
        events = [decode(event_type, bytes(payload)) for event_type, payload in rows]
    return [
        balance
        for event in events
        if not isinstance(event, events_pb2.AccountOpened)
        for balance in event.balances  # type: ignore[attr-defined]
    ]


def test_a_consumer_keeping_the_highest_version_ends_with_the_ledgers_balance(
    ledger_stub: LedgerServiceStub, ledger: Ledger
) -> None:
    for account_id, side in (("acct_v_bank", pb.NORMAL_SIDE_DEBIT), ("acct_v_alice", 0)):
        ledger_stub.OpenAccount(
            pb.OpenAccountRequest(
                account=pb.Account(
                    id=account_id,
                    currency="EUR",
                    normal_side=side or pb.NORMAL_SIDE_CREDIT,  # type: ignore[arg-type]
                )
            )
        )
    ledger_stub.CreateTransfers(
        pb.CreateTransfersRequest(
            transfers=[
                pb.TransferSpec(
                    id=f"tr_v_{i}",
                    movement=pb.Movement(legs=legs("acct_v_bank", "acct_v_alice", i)),
                )
                for i in range(1, 11)
            ]
        )
    )
    ledger_stub.CreateTransfer(
        pb.CreateTransferRequest(
            transfer=pb.TransferSpec(
                id="tr_v_hold",
                pending=pb.PendingMovement(
                    legs=legs("acct_v_alice", "acct_v_bank", 7), timeout=Duration(seconds=60)
                ),
            )
        )
    )
    ledger_stub.PostPendingTransfer(
        pb.PostPendingTransferRequest(transfer_id="tr_v_post", pending_transfer_id="tr_v_hold")
    )

    snapshots = [b for b in event_balances(ledger) if b.account_id == "acct_v_alice"]
    versions = [b.version for b in snapshots]
    assert versions == sorted(set(versions)), "one account's versions rise with every commit"
    current = ledger_stub.GetBalance(pb.GetBalanceRequest(account_id="acct_v_alice")).balance
    entries = ledger_stub.ListAccountEntries(
        pb.ListAccountEntriesRequest(account_id="acct_v_alice", page_size=100)
    ).entries
    assert current.version == versions[-1] == max(e.sequence for e in entries)
    # Whatever the arrival order, the highest version is the ledger's balance now.
    shuffler = random.Random(7)
    for _ in range(20):
        arrived = snapshots[:]
        shuffler.shuffle(arrived)
        newest = max(arrived, key=lambda b: b.version)
        assert (newest.posted, newest.pending, newest.available) == (
            current.posted,
            current.pending,
            current.available,
        )
