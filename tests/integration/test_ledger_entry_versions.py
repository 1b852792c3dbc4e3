"""Versions, balances per entry and commit times over gRPC on PostgreSQL; point-in-time
balances against a replay of the entries at 1,000 random instants."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from astra.ledger.v1 import ledger_pb2 as pb
from astra.ledger.v1.ledger_pb2_grpc import LedgerServiceStub
from chassis.grpc.status import error_info
from chassis.protos import to_timestamp
from google.protobuf.timestamp_pb2 import Timestamp

from tests.ledger_fixtures import MovableClock

pytestmark = pytest.mark.integration

D, C = pb.DIRECTION_DEBIT, pb.DIRECTION_CREDIT
CUSTOMERS = ("acct_pa", "acct_pb", "acct_pc", "acct_pd")


def legs(src: str, dst: str, amount: int) -> list[pb.Leg]:
    return [
        pb.Leg(account_id=src, direction=D, amount=amount, currency="EUR"),
        pb.Leg(account_id=dst, direction=C, amount=amount, currency="EUR"),
    ]


def movement(tid: str, src: str, dst: str, amount: int) -> pb.TransferSpec:
    return pb.TransferSpec(id=tid, movement=pb.Movement(legs=legs(src, dst, amount)))


def pending(tid: str, src: str, dst: str, amount: int) -> pb.TransferSpec:
    return pb.TransferSpec(id=tid, pending=pb.PendingMovement(legs=legs(src, dst, amount)))


def open_accounts(stub: LedgerServiceStub, *customers: str) -> None:
    stub.OpenAccount(
        pb.OpenAccountRequest(
            account=pb.Account(id="acct_bank", currency="EUR", normal_side=pb.NORMAL_SIDE_DEBIT)
        )
    )
    for account_id in customers:
        stub.OpenAccount(
            pb.OpenAccountRequest(
                account=pb.Account(
                    id=account_id,
                    currency="EUR",
                    normal_side=pb.NORMAL_SIDE_CREDIT,
                    debits_must_not_exceed_credits=True,
                )
            )
        )


def instant(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def entries_of(stub: LedgerServiceStub, account_id: str) -> list[pb.Entry]:
    entries: list[pb.Entry] = []
    token = ""
    while True:
        page = stub.ListAccountEntries(
            pb.ListAccountEntriesRequest(account_id=account_id, page_size=1000, page_token=token)
        )
        entries.extend(page.entries)
        token = page.next_page_token
        if not token:
            return entries


def test_commit_times_survive_replays_and_entries_carry_versions(
    ledger_stub: LedgerServiceStub, clock: MovableClock
) -> None:
    open_accounts(ledger_stub, "acct_alice", "acct_bob")
    stub = ledger_stub
    fund = movement("tr_fund", "acct_bank", "acct_alice", 1000)
    held = pending("tr_hold", "acct_alice", "acct_bob", 300)
    too_much = movement("tr_big", "acct_alice", "acct_bob", 10**6)
    times: dict[str, datetime] = {}
    answers: dict[str, Timestamp] = {}

    def at(tid: str, call: Callable[[], Timestamp]) -> None:
        clock.advance(timedelta(seconds=3, microseconds=17))
        times[tid] = clock.now()
        answers[tid] = call()

    at(
        "tr_fund",
        lambda: (
            stub.CreateTransfers(pb.CreateTransfersRequest(transfers=[fund])).results[0].create_time
        ),
    )
    at(
        "tr_hold",
        lambda: stub.CreateTransfer(pb.CreateTransferRequest(transfer=held)).transfer.create_time,
    )
    post = pb.PostPendingTransferRequest(
        transfer_id="tr_post",
        pending_transfer_id="tr_hold",
        legs=legs("acct_alice", "acct_bob", 100),
    )
    at("tr_post", lambda: stub.PostPendingTransfer(post).transfer.create_time)
    hold2 = pending("tr_hold2", "acct_alice", "acct_bob", 50)
    at(
        "tr_hold2",
        lambda: stub.CreateTransfer(pb.CreateTransferRequest(transfer=hold2)).transfer.create_time,
    )
    void = pb.VoidPendingTransferRequest(transfer_id="tr_void", pending_transfer_id="tr_hold2")
    at("tr_void", lambda: stub.VoidPendingTransfer(void).transfer.create_time)
    rev = pb.ReverseTransferRequest(transfer_id="tr_rev", reversed_transfer_id="tr_post")
    at("tr_rev", lambda: stub.ReverseTransfer(rev).transfer.create_time)
    at(
        "tr_big",
        lambda: (
            stub.CreateTransfers(pb.CreateTransfersRequest(transfers=[too_much]))
            .results[0]
            .create_time
        ),
    )
    assert {tid: instant(stamp) for tid, stamp in answers.items()} == times

    # An hour later, every replay and every read says the original commit time.
    clock.advance(timedelta(hours=1))
    batch = stub.CreateTransfers(
        pb.CreateTransfersRequest(
            transfers=[fund, held, too_much, movement("tr_new", "acct_bank", "acct_bob", 5)]
        )
    ).results
    assert [(r.replayed, instant(r.create_time)) for r in batch] == [
        (True, times["tr_fund"]),
        (True, times["tr_hold"]),
        (True, times["tr_big"]),
        (False, clock.now()),
    ]
    replayed = {
        "tr_hold": stub.CreateTransfer(pb.CreateTransferRequest(transfer=held)).transfer,
        "tr_post": stub.PostPendingTransfer(post).transfer,
        "tr_void": stub.VoidPendingTransfer(void).transfer,
        "tr_rev": stub.ReverseTransfer(rev).transfer,
    }
    assert {tid: instant(t.create_time) for tid, t in replayed.items()} == {
        tid: times[tid] for tid in replayed
    }
    # Concurrent single calls share group commits: replays and new transfers in one batch
    # still each say their own commit time.
    calls = [held] * 4 + [movement(f"tr_g{i}", "acct_bank", "acct_bob", 1) for i in range(4)]
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        grouped = list(
            pool.map(lambda s: stub.CreateTransfer(pb.CreateTransferRequest(transfer=s)), calls)
        )
    assert [instant(r.transfer.create_time) for r in grouped] == [times["tr_hold"]] * 4 + [
        clock.now()
    ] * 4
    for tid in ("tr_fund", "tr_hold", "tr_post", "tr_void", "tr_rev"):
        got = stub.GetTransfer(pb.GetTransferRequest(transfer_id=tid)).transfer
        assert instant(got.create_time) == times[tid]
    with pytest.raises(grpc.RpcError) as refused:
        stub.CreateTransfer(pb.CreateTransferRequest(transfer=too_much))
    info = error_info(refused.value)
    assert info is not None
    assert (info.reason, info.metadata["replayed"]) == ("INSUFFICIENT_FUNDS", "true")
    assert datetime.fromisoformat(info.metadata["create_time"]) == times["tr_big"]

    # Alice: fund, hold, release + post (partial), hold2, release (void), reversal.
    entries = entries_of(stub, "acct_alice")
    assert [e.sequence for e in entries] == list(range(1, 8))
    assert [(e.balance_before.version, e.balance_after.version) for e in entries] == [
        (n - 1, n) for n in range(1, 8)
    ]
    for previous, current in itertools.pairwise(entries):
        for field in ("debits_posted", "credits_posted", "debits_pending", "credits_pending"):
            assert getattr(current.balance_before, field) == getattr(previous.balance_after, field)
    assert [(e.balance_before.available, e.balance_after.available) for e in entries] == [
        (0, 1000),
        (1000, 700),
        (700, 1000),
        (1000, 900),
        (900, 850),
        (850, 900),
        (900, 1000),
    ]
    balance = stub.GetBalance(pb.GetBalanceRequest(account_id="acct_alice")).balance
    assert balance.version == entries[-1].balance_after.version == 7


def _effect(entry: pb.Entry) -> tuple[int, int, int, int]:
    """What an entry adds to (debits posted, credits posted, debits pending, credits pending)."""
    slot = (0 if entry.direction == D else 1) + (0 if entry.type == pb.ENTRY_TYPE_POSTED else 2)
    change = [0, 0, 0, 0]
    change[slot] = -entry.amount if entry.type == pb.ENTRY_TYPE_RELEASE else entry.amount
    return (change[0], change[1], change[2], change[3])


def _workload(stub: LedgerServiceStub, clock: MovableClock, rng: random.Random) -> int:
    """A few hundred transfers of every kind, batches and single calls, at controlled instants
    (sometimes several batches at one instant); returns how many were applied."""
    applied = 0
    open_holds: list[tuple[str, str, str, int]] = []
    moves: list[str] = []
    for b in range(60):
        clock.advance(timedelta(microseconds=rng.choice([0, 1, 250, 40_000, 1_500_000])))
        specs: list[pb.TransferSpec] = []
        made: list[tuple[str, str, str, str, int]] = []
        for i in range(rng.randint(3, 7)):
            tid = f"tr_w{b}_{i}"
            kind = rng.choice(["fund", "move", "move", "hold", "post", "void", "reverse"])
            src, dst = rng.sample(CUSTOMERS, 2)
            amount = rng.randint(1, 300)
            if kind == "fund":
                specs.append(movement(tid, "acct_bank", dst, amount * 5))
                made.append((tid, "move", "acct_bank", dst, amount * 5))
            elif kind == "move":
                specs.append(movement(tid, src, dst, amount))
                made.append((tid, "move", src, dst, amount))
            elif kind == "hold":
                specs.append(pending(tid, src, dst, amount))
                made.append((tid, "hold", src, dst, amount))
            elif kind in ("post", "void") and open_holds:
                target, hsrc, hdst, held = open_holds.pop(rng.randrange(len(open_holds)))
                if kind == "void":
                    spec = pb.TransferSpec(
                        id=tid, void_pending=pb.VoidPending(pending_transfer_id=target)
                    )
                else:
                    part = rng.randint(1, held)
                    spec = pb.TransferSpec(
                        id=tid,
                        post_pending=pb.PostPending(
                            pending_transfer_id=target, legs=legs(hsrc, hdst, part)
                        ),
                    )
                specs.append(spec)
                made.append((tid, kind, "", "", 0))
            elif kind == "reverse" and moves:
                target = moves.pop(rng.randrange(len(moves)))
                spec = pb.TransferSpec(
                    id=tid,
                    reversal=pb.Reversal(transfer_id=target, shortfall_account_id="acct_bank"),
                )
                specs.append(spec)
                made.append((tid, "reverse", "", "", 0))
        if b % 4 == 3:
            # Single calls join the group commit, each on its own.
            results = [
                pb.TransferResult(ok=True) if _created(stub, spec) else pb.TransferResult(ok=False)
                for spec in specs
            ]
        else:
            results = list(stub.CreateTransfers(pb.CreateTransfersRequest(transfers=specs)).results)
        for (tid, kind, src, dst, amount), result in zip(made, results, strict=True):
            if not result.ok:
                continue
            applied += 1
            if kind == "hold":
                open_holds.append((tid, src, dst, amount))
            elif kind == "move":
                moves.append(tid)
    return applied


def _created(stub: LedgerServiceStub, spec: pb.TransferSpec) -> bool:
    try:
        stub.CreateTransfer(pb.CreateTransferRequest(transfer=spec))
    except grpc.RpcError as refused:
        code = refused.code()
    else:
        return True
    # Refused by the ledger's state (funds), never by a malformed workload.
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    return False


def test_point_in_time_balances_equal_a_replay_of_the_entries_at_1000_random_instants(
    ledger_stub: LedgerServiceStub, clock: MovableClock
) -> None:
    rng = random.Random(18)
    open_accounts(ledger_stub, *CUSTOMERS)
    start = clock.now()
    applied = _workload(ledger_stub, clock, rng)
    assert applied >= 150
    end = clock.now()
    accounts = ("acct_bank", *CUSTOMERS)
    history = {a: entries_of(ledger_stub, a) for a in accounts}
    stamps = sorted({instant(e.create_time) for h in history.values() for e in h})
    assert len(stamps) > 30  # the workload spans many instants

    def replay(account_id: str, at: datetime) -> tuple[int, ...]:
        sums = [0, 0, 0, 0]
        version = 0
        for entry in history[account_id]:
            if instant(entry.create_time) > at:
                break  # an account's entries are stamped in sequence order
            for k, change in enumerate(_effect(entry)):
                sums[k] += change
            version = entry.sequence
        return (*sums, version)

    span = int((end - start).total_seconds() * 1_000_000)
    checked_at_entries = 0
    for _ in range(1000):
        pick = rng.random()
        if pick < 0.3:
            at = rng.choice(stamps)
            checked_at_entries += 1
        elif pick < 0.45:
            at = rng.choice(stamps) - timedelta(microseconds=1)
        else:
            at = (
                start
                - timedelta(seconds=1)
                + timedelta(microseconds=rng.randint(0, span + 2_000_000))
            )
        account_id = rng.choice(accounts)
        got = ledger_stub.GetBalance(
            pb.GetBalanceRequest(account_id=account_id, as_of=to_timestamp(at))
        ).balance
        assert (
            got.debits_posted,
            got.credits_posted,
            got.debits_pending,
            got.credits_pending,
            got.version,
        ) == replay(account_id, at), (account_id, at)
    assert checked_at_entries > 200
