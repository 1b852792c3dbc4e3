"""The ledger's hold-expiry worker, on PostgreSQL: voids due holds, one process at a time."""

from __future__ import annotations

from datetime import timedelta

from astra.ledger.v1 import ledger_pb2 as pb
from astra.ledger.v1.ledger_pb2_grpc import LedgerServiceStub
from astra_testkit.waiting import wait_until
from chassis.db.engine import create_db_engine
from chassis.db.locks import try_advisory_lock
from google.protobuf.duration_pb2 import Duration
from ledger.bootstrap import Ledger
from ledger.entrypoints.workers import HOLD_EXPIRY_LOCK, HoldExpiry

from tests.ledger_fixtures import MovableClock

D, C = pb.DIRECTION_DEBIT, pb.DIRECTION_CREDIT


def hold(stub: LedgerServiceStub, transfer_id: str) -> None:
    """acct_alice, funded by acct_bank, holds 300 for acct_bob for five seconds."""
    sides = {
        "acct_bank": pb.NORMAL_SIDE_DEBIT,
        "acct_alice": pb.NORMAL_SIDE_CREDIT,
        "acct_bob": pb.NORMAL_SIDE_CREDIT,
    }
    for account_id, side in sides.items():
        account = pb.Account(id=account_id, currency="EUR", normal_side=side)
        stub.OpenAccount(pb.OpenAccountRequest(account=account))
    legs = [
        pb.Leg(account_id="acct_bank", direction=D, amount=1000, currency="EUR"),
        pb.Leg(account_id="acct_alice", direction=C, amount=1000, currency="EUR"),
    ]
    stub.CreateTransfer(
        pb.CreateTransferRequest(
            transfer=pb.TransferSpec(id="tr_fund", movement=pb.Movement(legs=legs))
        )
    )
    stub.CreateTransfer(
        pb.CreateTransferRequest(
            transfer=pb.TransferSpec(
                id=transfer_id,
                pending=pb.PendingMovement(
                    legs=[
                        pb.Leg(account_id="acct_alice", direction=D, amount=300, currency="EUR"),
                        pb.Leg(account_id="acct_bob", direction=C, amount=300, currency="EUR"),
                    ],
                    timeout=Duration(seconds=5),
                ),
            )
        )
    )


def status(stub: LedgerServiceStub, transfer_id: str) -> int:
    return stub.GetTransfer(pb.GetTransferRequest(transfer_id=transfer_id)).transfer.status


def test_the_worker_voids_a_hold_once_its_timeout_has_passed_and_stops(
    ledger_stub: LedgerServiceStub, ledger: Ledger, clock: MovableClock
) -> None:
    hold(ledger_stub, "tr_hold")
    worker = HoldExpiry(ledger)
    worker.start()
    try:
        clock.advance(timedelta(seconds=6))
        wait_until(
            lambda: status(ledger_stub, "tr_hold") == pb.TRANSFER_STATUS_EXPIRED,
            30,
            "the hold to expire",
        )
    finally:
        worker.stop(10)
    assert not worker.running
    balance = ledger_stub.GetBalance(pb.GetBalanceRequest(account_id="acct_alice")).balance
    assert balance.available == 1000


def test_while_another_process_expires_holds_this_one_leaves_them(
    ledger_stub: LedgerServiceStub, ledger: Ledger, clock: MovableClock
) -> None:
    hold(ledger_stub, "tr_hold")
    clock.advance(timedelta(seconds=6))
    worker = HoldExpiry(ledger)
    other_process = create_db_engine(
        ledger.engine.url.render_as_string(hide_password=False), pool_size=1
    )
    try:
        with try_advisory_lock(other_process, HOLD_EXPIRY_LOCK) as theirs:
            assert theirs
            worker.expire_due()  # one round, as the loop runs it
            assert status(ledger_stub, "tr_hold") == pb.TRANSFER_STATUS_PENDING
        worker.expire_due()
        assert status(ledger_stub, "tr_hold") == pb.TRANSFER_STATUS_EXPIRED
    finally:
        other_process.dispose()
