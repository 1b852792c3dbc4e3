"""Thousands of transfers from many threads at a few hot, overdraft-protected accounts.

Shows: zero overdrafts at any point of any account's history, zero deadlock or
conflict errors reaching clients, and debits equal to credits in every currency.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import pytest
from astra.ledger.v1 import ledger_pb2 as pb
from astra.ledger.v1.ledger_pb2_grpc import LedgerServiceStub
from chassis.grpc.status import reason_of
from ledger.bootstrap import Ledger
from ledger.domain.model import Direction, Leg, MovementOp, TransferRequest
from ledger.service_layer import use_cases
from prometheus_client import REGISTRY
from sqlalchemy import text

D, C = pb.DIRECTION_DEBIT, pb.DIRECTION_CREDIT
EUR_HOT = [f"acct_eur_hot{i}" for i in range(4)]
USD_HOT = [f"acct_usd_hot{i}" for i in range(2)]
THREADS = 16
OPERATIONS_PER_THREAD = 150
EXPECTED_REFUSALS = {"INSUFFICIENT_FUNDS", "LINKED_TRANSFER_FAILED"}


def leg(account: str, direction: int, amount: int, currency: str) -> pb.Leg:
    return pb.Leg(account_id=account, direction=direction, amount=amount, currency=currency)  # type: ignore[arg-type]


def movement(
    tid: str, src: str, dst: str, amount: int, currency: str, linked: bool = False
) -> pb.TransferSpec:
    return pb.TransferSpec(
        id=tid,
        linked=linked,
        movement=pb.Movement(legs=[leg(src, D, amount, currency), leg(dst, C, amount, currency)]),
    )


def setup_accounts(stub: LedgerServiceStub) -> None:
    for currency, hot in (("EUR", EUR_HOT), ("USD", USD_HOT)):
        source = f"acct_{currency.lower()}_source"
        stub.OpenAccount(
            pb.OpenAccountRequest(
                account=pb.Account(id=source, currency=currency, normal_side=pb.NORMAL_SIDE_DEBIT)
            )
        )
        stub.OpenAccount(
            pb.OpenAccountRequest(
                account=pb.Account(
                    id=f"acct_{currency.lower()}_sink",
                    currency=currency,
                    normal_side=pb.NORMAL_SIDE_CREDIT,
                )
            )
        )
        for account in hot:
            stub.OpenAccount(
                pb.OpenAccountRequest(
                    account=pb.Account(
                        id=account,
                        currency=currency,
                        normal_side=pb.NORMAL_SIDE_CREDIT,
                        debits_must_not_exceed_credits=True,
                    )
                )
            )
        stub.CreateTransfers(
            pb.CreateTransfersRequest(
                transfers=[movement(f"tr_fund_{a}", source, a, 2000, currency) for a in hot]
            )
        )


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.applied = 0
        self.refusals: Counter[str] = Counter()
        self.errors: list[str] = []

    def ok(self, n: int = 1) -> None:
        with self.lock:
            self.applied += n

    def refused(self, reason: str) -> None:
        with self.lock:
            if reason in EXPECTED_REFUSALS:
                self.refusals[reason] += 1
            else:
                self.errors.append(reason)


def worker(stub: LedgerServiceStub, thread: int, tally: Tally) -> None:
    rng = random.Random(thread)
    for op in range(OPERATIONS_PER_THREAD):
        base = f"tr_t{thread}_o{op}"
        currency, hot = ("USD", USD_HOT) if rng.random() < 0.2 else ("EUR", EUR_HOT)
        src, dst = rng.sample(hot, 2)
        sink = f"acct_{currency.lower()}_sink"
        amount = rng.randint(1, 250)
        choice = rng.random()
        try:
            if choice < 0.45:
                stub.CreateTransfer(
                    pb.CreateTransferRequest(transfer=movement(base, src, dst, amount, currency)),
                    timeout=60,
                )
                tally.ok()
            elif choice < 0.65:
                items = []
                for k in range(8):
                    a, b = rng.sample(hot, 2)
                    if k == 7:
                        b = sink
                    items.append(
                        movement(
                            f"{base}_{k}", a, b, rng.randint(1, 300), currency, linked=(k % 4 == 1)
                        )
                    )
                reply = stub.CreateTransfers(pb.CreateTransfersRequest(transfers=items), timeout=60)
                for result in reply.results:
                    if result.ok:
                        tally.ok()
                    else:
                        tally.refused(result.reason)
            elif choice < 0.8:
                stub.CreateTransfer(
                    pb.CreateTransferRequest(
                        transfer=pb.TransferSpec(
                            id=f"{base}_h",
                            pending=pb.PendingMovement(
                                legs=[leg(src, D, amount, currency), leg(sink, C, amount, currency)]
                            ),
                        )
                    ),
                    timeout=60,
                )
                tally.ok()
                if rng.random() < 0.5:
                    part = amount // 2 + 1
                    stub.PostPendingTransfer(
                        pb.PostPendingTransferRequest(
                            transfer_id=f"{base}_p",
                            pending_transfer_id=f"{base}_h",
                            legs=[leg(src, D, part, currency), leg(sink, C, part, currency)],
                        ),
                        timeout=60,
                    )
                else:
                    stub.VoidPendingTransfer(
                        pb.VoidPendingTransferRequest(
                            transfer_id=f"{base}_v", pending_transfer_id=f"{base}_h"
                        ),
                        timeout=60,
                    )
                tally.ok()
            else:
                source = f"acct_{currency.lower()}_source"
                stub.CreateTransfer(
                    pb.CreateTransferRequest(
                        transfer=movement(base, source, dst, amount, currency)
                    ),
                    timeout=60,
                )
                tally.ok()
        except grpc.RpcError as error:
            reason = reason_of(error) or error.code().name
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                tally.refused(reason)
            else:
                tally.refused(f"{error.code().name}:{reason}:{error.details()}")


def test_hot_accounts_under_concurrency(ledger_stub: LedgerServiceStub, ledger: Ledger) -> None:
    setup_accounts(ledger_stub)
    tally = Tally()
    threads = [
        threading.Thread(target=worker, args=(ledger_stub, i, tally)) for i in range(THREADS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # No deadlock, conflict or other error reached any client; refusals are business ones.
    assert tally.errors == []
    attempted = tally.applied + sum(tally.refusals.values())
    assert attempted >= 4000, attempted  # thousands of transfer operations
    assert tally.applied > attempted // 2
    assert tally.refusals["INSUFFICIENT_FUNDS"] > 0  # the limits were really exercised

    with ledger.engine.connect() as c:
        accounts = c.execute(
            text(
                "SELECT id, currency, debits_must_not_exceed_credits, debits_posted,"
                " credits_posted, debits_pending, credits_pending, entry_sequence FROM accounts"
            )
        ).all()
        entries = c.execute(
            text(
                "SELECT account_id, sequence, debits_posted, credits_posted, debits_pending,"
                " credits_pending FROM entries ORDER BY account_id, sequence"
            )
        ).all()
        applied = c.execute(text("SELECT count(*) FROM transfers WHERE ok")).scalar_one()

    # Debits equal credits per currency, posted and pending.
    net: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for _id, currency, _flag, dp, cp, dq, cq, _seq in accounts:
        net[currency][0] += dp - cp
        net[currency][1] += dq - cq
    assert dict(net) == {"EUR": [0, 0], "USD": [0, 0]}

    # Zero overdrafts at any point of any protected account's history, and the
    # history adds up to the current sums.
    protected = {row[0] for row in accounts if row[2]}
    history: dict[str, list[tuple[int, int, int, int, int]]] = defaultdict(list)
    for account_id, seq, dp, cp, dq, cq in entries:
        history[account_id].append((seq, dp, cp, dq, cq))
    for _id, _currency, _flag, dp, cp, dq, cq, seq in accounts:
        steps = history[_id]
        assert [s[0] for s in steps] == list(range(1, seq + 1))
        assert steps[-1][1:] == (dp, cp, dq, cq)
        if _id in protected:
            assert all(s[1] + s[3] <= s[2] for s in steps), f"{_id} was overdrawn"
        # Every hold that was placed was posted or voided by the same worker.
        assert (dq, cq) == (0, 0)

    # Every success a client saw is in the journal (plus the six funding transfers).
    assert applied == tally.applied + len(EUR_HOT) + len(USD_HOT)


def test_a_new_transfer_sent_twice_at_once_is_applied_once_and_replayed_once(
    ledger_stub: LedgerServiceStub, ledger: Ledger
) -> None:
    """A client's retry racing its own first attempt (both paths: batch item and single call).

    Both read the id as unknown before either commits; the loser's insert hits the
    primary key. It must start over and replay the winner's result, never fail.
    """
    setup_accounts(ledger_stub)
    rounds = 40
    answers: list[str] = []

    def as_batch(spec: pb.TransferSpec, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            request = pb.CreateTransfersRequest(transfers=[spec])
            (result,) = ledger_stub.CreateTransfers(request).results
            answers.append("ok" if result.ok else result.reason)
        except grpc.RpcError as error:
            answers.append(f"{error.code().name} {reason_of(error)} {error.details()}")

    def as_single(spec: pb.TransferSpec, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            ledger_stub.CreateTransfer(pb.CreateTransferRequest(transfer=spec))
            answers.append("ok")
        except grpc.RpcError as error:
            answers.append(f"{error.code().name} {reason_of(error)} {error.details()}")

    for i in range(rounds):
        spec = movement(f"tr_twice_{i}", "acct_eur_source", EUR_HOT[i % 4], 10, "EUR")
        barrier = threading.Barrier(2)
        threads = [
            threading.Thread(target=send, args=(spec, barrier)) for send in (as_batch, as_single)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert [a for a in answers if a != "ok"] == []
    assert len(answers) == 2 * rounds
    with ledger.engine.connect() as c:
        applied = c.execute(
            text("SELECT count(*) FROM transfers WHERE id LIKE 'tr\\_twice\\_%' AND ok")
        ).scalar_one()
        entries = c.execute(
            text("SELECT count(*) FROM entries WHERE transfer_id LIKE 'tr\\_twice\\_%'")
        ).scalar_one()
    assert (applied, entries) == (rounds, 2 * rounds)


def test_a_hold_posted_twice_at_once_under_two_ids_is_posted_once(
    ledger_stub: LedgerServiceStub, ledger: Ledger
) -> None:
    """Two posts of one hold race (a batch item and a single call): one wins, one is refused."""
    setup_accounts(ledger_stub)
    rounds = 30
    answers: list[str] = []

    def post(transfer_id: str, hold_id: str, barrier: threading.Barrier, batch: bool) -> None:
        spec = pb.TransferSpec(
            id=transfer_id, post_pending=pb.PostPending(pending_transfer_id=hold_id)
        )
        barrier.wait()
        try:
            if batch:
                request = pb.CreateTransfersRequest(transfers=[spec])
                (result,) = ledger_stub.CreateTransfers(request).results
                answers.append("ok" if result.ok else result.reason)
            else:
                ledger_stub.CreateTransfer(pb.CreateTransferRequest(transfer=spec))
                answers.append("ok")
        except grpc.RpcError as error:
            answers.append(reason_of(error) or error.code().name)

    for i in range(rounds):
        hold = pb.TransferSpec(
            id=f"tr_hold_{i}",
            pending=pb.PendingMovement(
                legs=[leg("acct_eur_source", D, 10, "EUR"), leg(EUR_HOT[i % 4], C, 10, "EUR")]
            ),
        )
        ledger_stub.CreateTransfer(pb.CreateTransferRequest(transfer=hold))
        barrier = threading.Barrier(2)
        threads = [
            threading.Thread(target=post, args=(f"tr_post_{i}_{batch}", hold.id, barrier, batch))
            for batch in (True, False)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert Counter(answers) == {"ok": rounds, "ALREADY_POSTED": rounds}
    with ledger.engine.connect() as c:
        posts = c.execute(
            text("SELECT count(*) FROM transfers WHERE id LIKE 'tr\\_post\\_%' AND ok")
        ).scalar_one()
    assert posts == rounds


# --- an operation naming a transfer that is still committing ---------------------------

# What a reference to a transfer may be refused with when it was sent before that
# transfer's creation was acknowledged (its transaction may not have committed yet).
NOT_YET = {"TRANSFER_NOT_FOUND", "PENDING_TRANSFER_NOT_FOUND"}
REFERENCE_KINDS = ("reverse", "post", "post_partial", "void")


def _reference_spec(kind: str, tid: str, target: str) -> pb.TransferSpec:
    if kind == "reverse":
        return pb.TransferSpec(id=tid, reversal=pb.Reversal(transfer_id=target))
    if kind == "void":
        return pb.TransferSpec(id=tid, void_pending=pb.VoidPending(pending_transfer_id=target))
    legs = []
    if kind == "post_partial":
        legs = [leg("acct_eur_source", D, 4, "EUR"), leg("acct_eur_sink", C, 4, "EUR")]
    return pb.TransferSpec(
        id=tid, post_pending=pb.PostPending(pending_transfer_id=target, legs=legs)
    )


def _send(stub: LedgerServiceStub, spec: pb.TransferSpec, batch: bool) -> str:
    """Send one transfer as a CreateTransfers item or as a single call: "ok" or the reason."""
    try:
        if batch:
            (result,) = stub.CreateTransfers(
                pb.CreateTransfersRequest(transfers=[spec]), timeout=60
            ).results
            return "ok" if result.ok else result.reason
        stub.CreateTransfer(pb.CreateTransferRequest(transfer=spec), timeout=60)
        return "ok"
    except grpc.RpcError as error:
        return f"{error.code().name}:{reason_of(error)}"


def _race(
    stub: LedgerServiceStub, target: pb.TransferSpec, reference: pb.TransferSpec, batch: bool
) -> tuple[dict[str, str], dict[str, float]]:
    """Send both at once from two threads: their answers, when the target was acknowledged
    and when the reference was sent. ``batch``: the target as a CreateTransfers item, the
    reference as a single call (else the other way round)."""
    times: dict[str, float] = {}
    answers: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def create() -> None:
        barrier.wait()
        answers["target"] = _send(stub, target, batch)
        times["acked"] = time.monotonic()

    def refer() -> None:
        barrier.wait()
        times["sent"] = time.monotonic()
        answers["reference"] = _send(stub, reference, not batch)

    threads = [threading.Thread(target=create), threading.Thread(target=refer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers, times


def test_an_operation_naming_a_transfer_still_committing_is_decided_on_the_committed_state(
    ledger_stub: LedgerServiceStub, ledger: Ledger
) -> None:
    """(create X, reverse/post/void X) sent at once, from two threads, on both paths.

    The referring operation is decided under the locks of X's accounts, on what is
    committed then: it is applied, or refused with X not found when it was sent
    before X was acknowledged; never ACCOUNT_NOT_FOUND (X's accounts exist), never
    INTERNAL. Its retry with the same id after both calls ended answers the same.
    """
    setup_accounts(ledger_stub)
    rounds = 160
    wrong: list[str] = []
    outcomes: Counter[str] = Counter()
    for i in range(rounds):
        kind = REFERENCE_KINDS[i % len(REFERENCE_KINDS)]
        target_id, ref_id = f"tr_race_x{i}", f"tr_race_r{i}"
        legs = [leg("acct_eur_source", D, 10, "EUR"), leg("acct_eur_sink", C, 10, "EUR")]
        target = (
            pb.TransferSpec(id=target_id, movement=pb.Movement(legs=legs))
            if kind == "reverse"
            else pb.TransferSpec(id=target_id, pending=pb.PendingMovement(legs=legs))
        )
        reference = _reference_spec(kind, ref_id, target_id)
        # Alternate which side goes through the group commit: two single calls
        # share one batcher worker and never race each other in one process.
        target_batch = i % 2 == 0
        answers, times = _race(ledger_stub, target, reference, target_batch)
        first = answers["reference"]
        outcomes[first if first == "ok" else first.split(":")[-1]] += 1
        if answers["target"] != "ok":
            wrong.append(f"{target_id}: {answers['target']}")
        reason = first.split(":")[-1]
        if first != "ok" and not (reason in NOT_YET and times["sent"] < times["acked"]):
            wrong.append(f"{kind} {ref_id}: {first}")
        retry = _send(ledger_stub, reference, not target_batch)
        if retry != first:
            wrong.append(f"{kind} {ref_id}: first {first}, retried {retry}")
        if first != "ok":
            # The refusal stays recorded under its id (TigerBeetle's rule); a new id
            # sent after the target's acknowledgement always finds it.
            again = _reference_spec(kind, f"{ref_id}_again", target_id)
            if (later := _send(ledger_stub, again, not target_batch)) != "ok":
                wrong.append(f"{kind} {ref_id}_again after the ack: {later}")
    assert wrong == [], (len(wrong), outcomes)
    assert outcomes["ok"] > 0


# --- the group commit: deadlines, and no shared fate ---------------------------------------


def _handled(code: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "grpc_server_handled_total",
            {
                "grpc_service": "astra.ledger.v1.LedgerService",
                "grpc_method": "CreateTransfer",
                "grpc_code": code,
            },
        )
        or 0.0
    )


def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` (a bounded wait for another thread's progress, not a timing)."""
    for _ in range(2000):
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


def _lock_waiters(ledger: Ledger) -> int:
    with ledger.engine.connect() as c:
        return int(
            c.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            ).scalar_one()
        )


def _applied(ledger: Ledger, transfer_id: str) -> bool:
    with ledger.engine.connect() as c:
        found = c.execute(
            text("SELECT ok FROM transfers WHERE id = :id"), {"id": transfer_id}
        ).scalar()
    return bool(found)


def test_a_deadline_passing_inside_the_group_commit_is_deadline_exceeded_and_learnable(
    ledger_stub: LedgerServiceStub, ledger: Ledger
) -> None:
    """Never INTERNAL: a call still queued is withdrawn, one under way runs on; the same id
    afterwards returns the outcome either way."""
    setup_accounts(ledger_stub)
    internal, exceeded = _handled("INTERNAL"), _handled("DEADLINE_EXCEEDED")
    running = movement("tr_dl_running", "acct_eur_source", "acct_eur_sink", 5, "EUR")
    queued = movement("tr_dl_queued", "acct_eur_source", EUR_HOT[0], 5, "EUR")
    codes: list[grpc.StatusCode] = []

    def call(spec: pb.TransferSpec, timeout: float) -> None:
        try:
            ledger_stub.CreateTransfer(pb.CreateTransferRequest(transfer=spec), timeout=timeout)
        except grpc.RpcError as error:
            codes.append(error.code())

    with ledger.engine.connect() as holder:
        # The batcher's one worker waits on this lock with the first call's batch.
        holder.execute(text("SELECT id FROM accounts WHERE id = 'acct_eur_sink' FOR UPDATE"))
        first = threading.Thread(target=call, args=(running, 1.0))
        first.start()
        _until(lambda: _lock_waiters(ledger) == 1, "the first batch waits on the lock")
        call(queued, 0.3)
        first.join()
        _until(lambda: _handled("DEADLINE_EXCEEDED") == exceeded + 2, "both calls answered")
        holder.rollback()
    assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * 2
    assert _handled("INTERNAL") == internal
    _until(lambda: _applied(ledger, "tr_dl_running"), "the batch under way commits")
    assert not _applied(ledger, "tr_dl_queued")  # withdrawn before it started
    for spec in (running, queued):
        again = ledger_stub.CreateTransfer(pb.CreateTransferRequest(transfer=spec), timeout=60)
        assert again.transfer.id == spec.id
    with ledger.engine.connect() as c:
        applied = c.execute(
            text("SELECT count(*) FROM transfers WHERE id LIKE 'tr\\_dl\\_%' AND ok")
        ).scalar_one()
    assert applied == 2


def test_one_item_failing_in_the_database_fails_alone_and_its_group_is_applied(
    ledger_stub: LedgerServiceStub, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request that passed the edge but fails in the database (here a NUL byte in its id,
    sent past validation) shares a group commit with good ones: only its caller gets an
    error, and nothing of it is written."""
    setup_accounts(ledger_stub)
    sizes: list[int] = []
    execute_batch = use_cases.execute_batch

    def counted(uow: Any, clock: Any, requests: Sequence[TransferRequest]) -> Any:
        sizes.append(len(requests))
        return execute_batch(uow, clock, requests)

    monkeypatch.setattr(use_cases, "execute_batch", counted)
    good = [
        TransferRequest(
            f"tr_group_{i}",
            MovementOp(
                (
                    Leg("acct_eur_source", Direction.DEBIT, 3, "EUR"),
                    Leg(EUR_HOT[i % 4], Direction.CREDIT, 3, "EUR"),
                )
            ),
        )
        for i in range(12)
    ]
    bad = TransferRequest("tr_group_bad\x00", good[0].operation)
    blocker = TransferRequest(
        "tr_group_blocker",
        MovementOp(
            (
                Leg("acct_eur_source", Direction.DEBIT, 1, "EUR"),
                Leg("acct_eur_sink", Direction.CREDIT, 1, "EUR"),
            )
        ),
    )
    answers: dict[str, str] = {}

    def submit(request: TransferRequest) -> None:
        try:
            outcome = ledger.batcher.submit(request, timeout=60)
            answers[request.id] = "ok" if outcome.result.ok else outcome.result.reason
        except Exception as error:
            answers[request.id] = f"error:{type(error).__name__}"

    group = [*good[:6], bad, *good[6:]]
    with ledger.engine.connect() as holder:
        holder.execute(text("SELECT id FROM accounts WHERE id = 'acct_eur_sink' FOR UPDATE"))
        threads = [threading.Thread(target=submit, args=(blocker,))]
        threads[0].start()
        _until(lambda: _lock_waiters(ledger) == 1, "the blocker's batch waits on the lock")
        for request in group:
            threads.append(threading.Thread(target=submit, args=(request,)))
            threads[-1].start()
        _until(lambda: ledger.batcher._queue.qsize() == len(group), "the group is queued")
        holder.rollback()
    for thread in threads:
        thread.join()
    assert len(group) in sizes  # they were executed as one group first
    assert answers.pop(bad.id).startswith("error:")
    assert answers == {r.id: "ok" for r in [blocker, *good]}
    with ledger.engine.connect() as c:
        applied = c.execute(
            text("SELECT count(*) FROM transfers WHERE id LIKE 'tr\\_group\\_%' AND ok")
        ).scalar_one()
        bad_rows = c.execute(
            text("SELECT count(*) FROM transfers WHERE id LIKE 'tr\\_group\\_bad%'")
        ).scalar_one()
    assert (applied, bad_rows) == (len(good) + 1, 0)
