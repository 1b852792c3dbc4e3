"""The ledger over gRPC, on PostgreSQL: behaviour, error details and what is written."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import grpc
import pytest
from astra.ledger.v1 import events_pb2
from astra.ledger.v1 import ledger_pb2 as pb
from astra.ledger.v1.ledger_pb2_grpc import LedgerServiceStub
from chassis.grpc.status import bad_request, error_info, reason_of
from chassis.kernel.ids import MAX_ID_BODY
from chassis.protos import to_timestamp
from google.protobuf.duration_pb2 import Duration
from ledger.adapters.repository import SqlLedgerRepository
from ledger.bootstrap import Ledger
from ledger.domain.batch import BatchOutcome
from ledger.service_layer import use_cases
from sqlalchemy import text

from tests.ledger_fixtures import MovableClock

D, C = pb.DIRECTION_DEBIT, pb.DIRECTION_CREDIT


def leg(account: str, direction: int, amount: int, currency: str = "EUR") -> pb.Leg:
    return pb.Leg(account_id=account, direction=direction, amount=amount, currency=currency)  # type: ignore[arg-type]


def movement(
    tid: str,
    src: str,
    dst: str,
    amount: int,
    *,
    linked: bool = False,
    metadata: dict[str, str] | None = None,
) -> pb.TransferSpec:
    return pb.TransferSpec(
        id=tid,
        linked=linked,
        metadata=metadata,
        movement=pb.Movement(legs=[leg(src, D, amount), leg(dst, C, amount)]),
    )


def open_account(stub: LedgerServiceStub, account_id: str, **kw: object) -> pb.Account:
    values: dict[str, object] = {"currency": "EUR", "normal_side": pb.NORMAL_SIDE_CREDIT, **kw}
    return stub.OpenAccount(
        pb.OpenAccountRequest(account=pb.Account(id=account_id, **values))  # type: ignore[arg-type]
    ).account


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def journal_counts(ledger: Ledger) -> tuple[int, int, int, int]:
    with ledger.engine.connect() as c:
        counts = [
            int(c.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
            for t in ("accounts", "transfers", "entries", "outbox")
        ]
    return counts[0], counts[1], counts[2], counts[3]


@pytest.fixture
def funded(ledger_stub: LedgerServiceStub) -> LedgerServiceStub:
    """acct_bank (asset) funded acct_alice with 1,000; acct_bob is empty; both can't overdraw."""
    open_account(ledger_stub, "acct_bank", normal_side=pb.NORMAL_SIDE_DEBIT)
    open_account(
        ledger_stub, "acct_alice", debits_must_not_exceed_credits=True, customer_id="cus_alice"
    )
    open_account(ledger_stub, "acct_bob", debits_must_not_exceed_credits=True)
    ledger_stub.CreateTransfer(
        pb.CreateTransferRequest(transfer=movement("tr_fund", "acct_bank", "acct_alice", 1000))
    )
    return ledger_stub


# --- accounts ------------------------------------------------------------------------


def test_open_account_is_idempotent_and_refuses_reuse_with_other_content(
    ledger_stub: LedgerServiceStub,
) -> None:
    first = open_account(ledger_stub, "acct_1", currency="JPY", metadata={"k": "v"})
    assert first.currency_exponent == 0
    again = open_account(ledger_stub, "acct_1", currency="JPY", metadata={"k": "v"})
    assert again == first
    error = rpc_error(lambda: open_account(ledger_stub, "acct_1", currency="EUR"))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    info = error_info(error)
    assert info is not None
    assert (info.reason, info.domain) == ("IDEMPOTENCY_KEY_REUSED", "ledger.astra")


def test_unknown_account_is_not_found(ledger_stub: LedgerServiceStub) -> None:
    error = rpc_error(lambda: ledger_stub.GetAccount(pb.GetAccountRequest(account_id="acct_no")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert reason_of(error) == "ACCOUNT_NOT_FOUND"


def test_list_accounts_pages_through_everything_once(ledger_stub: LedgerServiceStub) -> None:
    ids = [f"acct_{i:02d}" for i in range(7)]
    for i, account_id in enumerate(ids):
        open_account(ledger_stub, account_id, customer_id="cus_x" if i % 2 else "")
    seen, token = [], ""
    while True:
        page = ledger_stub.ListAccounts(pb.ListAccountsRequest(page_size=3, page_token=token))
        seen += [a.id for a in page.accounts]
        token = page.next_page_token
        if not token:
            break
    assert seen == ids
    mine = ledger_stub.ListAccounts(pb.ListAccountsRequest(customer_id="cus_x"))
    assert [a.id for a in mine.accounts] == ids[1::2]
    error = rpc_error(lambda: ledger_stub.ListAccounts(pb.ListAccountsRequest(page_size=1001)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- transfers -----------------------------------------------------------------------


def test_batch_results_follow_items_with_reasons(funded: LedgerServiceStub) -> None:
    reply = funded.CreateTransfers(
        pb.CreateTransfersRequest(
            transfers=[
                movement("tr_1", "acct_alice", "acct_bob", 400),
                movement("tr_2", "acct_alice", "acct_bob", 700),
                movement("tr_3", "acct_alice", "acct_bob", 100, linked=True),
                movement("tr_4", "acct_bob", "acct_nobody", 1),
                movement("tr_5", "acct_bob", "acct_alice", 50),
            ]
        )
    )
    assert [(r.id, r.ok, r.reason) for r in reply.results] == [
        ("tr_1", True, ""),
        ("tr_2", False, "INSUFFICIENT_FUNDS"),
        ("tr_3", False, "LINKED_TRANSFER_FAILED"),
        ("tr_4", False, "ACCOUNT_NOT_FOUND"),
        ("tr_5", True, ""),
    ]
    balance = funded.GetBalance(pb.GetBalanceRequest(account_id="acct_alice")).balance
    assert (balance.posted, balance.available) == (650, 650)


def test_single_transfer_refusals_map_to_codes(funded: LedgerServiceStub) -> None:
    def create(spec: pb.TransferSpec) -> grpc.RpcError:
        return rpc_error(lambda: funded.CreateTransfer(pb.CreateTransferRequest(transfer=spec)))

    broke = create(movement("tr_a", "acct_bob", "acct_alice", 1))
    assert (broke.code(), reason_of(broke)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_FUNDS",
    )
    missing = create(movement("tr_b", "acct_alice", "acct_ghost", 1))
    assert (missing.code(), reason_of(missing)) == (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")
    open_account(funded, "acct_usd", currency="USD")
    mismatch = create(
        pb.TransferSpec(
            id="tr_c",
            movement=pb.Movement(legs=[leg("acct_alice", D, 5), leg("acct_usd", C, 5)]),
        )
    )
    assert (mismatch.code(), reason_of(mismatch)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CURRENCY_MISMATCH",
    )
    # A recorded refusal replays as the same refusal, flagged as a replay.
    again = create(movement("tr_a", "acct_bob", "acct_alice", 1))
    info = error_info(again)
    assert info is not None
    assert info.reason == "INSUFFICIENT_FUNDS"
    assert info.metadata["replayed"] == "true"
    reused = create(movement("tr_a", "acct_bob", "acct_alice", 2))
    assert (reused.code(), reason_of(reused)) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "IDEMPOTENCY_KEY_REUSED",
    )


def test_replaying_a_success_returns_the_original_transfer(funded: LedgerServiceStub) -> None:
    spec = movement("tr_once", "acct_alice", "acct_bob", 10, metadata={"order": "42"})
    first = funded.CreateTransfer(pb.CreateTransferRequest(transfer=spec)).transfer
    second = funded.CreateTransfer(pb.CreateTransferRequest(transfer=spec)).transfer
    assert first == second
    assert funded.GetBalance(pb.GetBalanceRequest(account_id="acct_bob")).balance.posted == 10


def test_two_phase_lifecycle(funded: LedgerServiceStub, clock: MovableClock) -> None:
    held = funded.CreateTransfer(
        pb.CreateTransferRequest(
            transfer=pb.TransferSpec(
                id="tr_hold",
                pending=pb.PendingMovement(
                    legs=[leg("acct_alice", D, 600), leg("acct_bob", C, 600)],
                    timeout=Duration(seconds=60),
                ),
            )
        )
    ).transfer
    assert held.status == pb.TRANSFER_STATUS_PENDING
    assert held.expire_time.ToDatetime() > held.create_time.ToDatetime()
    balance = funded.GetBalance(pb.GetBalanceRequest(account_id="acct_alice")).balance
    assert (balance.posted, balance.pending, balance.available) == (1000, -600, 400)
    posted = funded.PostPendingTransfer(
        pb.PostPendingTransferRequest(
            transfer_id="tr_post",
            pending_transfer_id="tr_hold",
            legs=[leg("acct_alice", D, 250), leg("acct_bob", C, 250)],
        )
    ).transfer
    assert posted.kind == pb.TRANSFER_KIND_POST_PENDING
    assert [leg_.amount for leg_ in posted.legs] == [250, 250]
    hold_now = funded.GetTransfer(pb.GetTransferRequest(transfer_id="tr_hold")).transfer
    assert (hold_now.status, hold_now.resolved_by_transfer_id) == (
        pb.TRANSFER_STATUS_POSTED,
        "tr_post",
    )
    balance = funded.GetBalance(pb.GetBalanceRequest(account_id="acct_alice")).balance
    assert (balance.posted, balance.available) == (750, 750)
    void = rpc_error(
        lambda: funded.VoidPendingTransfer(
            pb.VoidPendingTransferRequest(transfer_id="tr_void", pending_transfer_id="tr_hold")
        )
    )
    assert reason_of(void) == "ALREADY_POSTED"


def test_expired_holds_are_voided_by_the_worker(
    funded: LedgerServiceStub, ledger: Ledger, clock: MovableClock
) -> None:
    funded.CreateTransfer(
        pb.CreateTransferRequest(
            transfer=pb.TransferSpec(
                id="tr_h",
                pending=pb.PendingMovement(
                    legs=[leg("acct_alice", D, 300), leg("acct_bob", C, 300)],
                    timeout=Duration(seconds=5),
                ),
            )
        )
    )
    assert use_cases.expire_due_holds(ledger.uow, ledger.clock) == 0
    clock.advance(timedelta(seconds=6))
    late_post = rpc_error(
        lambda: funded.PostPendingTransfer(
            pb.PostPendingTransferRequest(transfer_id="tr_p", pending_transfer_id="tr_h")
        )
    )
    assert reason_of(late_post) == "PENDING_TRANSFER_EXPIRED"
    assert use_cases.expire_due_holds(ledger.uow, ledger.clock) == 1
    assert use_cases.expire_due_holds(ledger.uow, ledger.clock) == 0
    hold = funded.GetTransfer(pb.GetTransferRequest(transfer_id="tr_h")).transfer
    assert hold.status == pb.TRANSFER_STATUS_EXPIRED
    assert funded.GetBalance(pb.GetBalanceRequest(account_id="acct_alice")).balance.available == (
        1000
    )
    with ledger.engine.connect() as c:
        types = [r[0] for r in c.execute(text("SELECT event_type FROM outbox ORDER BY id"))]
    assert types[-1] == "astra.ledger.v1.PendingTransferExpired"


def test_reversal_makes_the_correcting_transfer(funded: LedgerServiceStub) -> None:
    funded.CreateTransfer(
        pb.CreateTransferRequest(transfer=movement("tr_pay", "acct_alice", "acct_bob", 300))
    )
    reversal = funded.ReverseTransfer(
        pb.ReverseTransferRequest(transfer_id="tr_rev", reversed_transfer_id="tr_pay")
    ).transfer
    assert [(x.account_id, x.direction) for x in reversal.legs] == [
        ("acct_alice", C),
        ("acct_bob", D),
    ]
    original = funded.GetTransfer(pb.GetTransferRequest(transfer_id="tr_pay")).transfer
    assert original.reversed_by_transfer_id == "tr_rev"
    again = rpc_error(
        lambda: funded.ReverseTransfer(
            pb.ReverseTransferRequest(transfer_id="tr_rev2", reversed_transfer_id="tr_pay")
        )
    )
    assert reason_of(again) == "ALREADY_REVERSED"
    refused = rpc_error(lambda: funded.GetTransfer(pb.GetTransferRequest(transfer_id="tr_rev2")))
    info = error_info(refused)
    assert info is not None
    assert (info.reason, info.metadata["refused_reason"]) == (
        "TRANSFER_NOT_FOUND",
        "ALREADY_REVERSED",
    )


def test_a_reversal_books_what_a_spent_account_lacks_on_the_shortfall_account(
    funded: LedgerServiceStub,
) -> None:
    open_account(funded, "acct_receivable", normal_side=pb.NORMAL_SIDE_DEBIT)
    funded.CreateTransfers(
        pb.CreateTransfersRequest(
            transfers=[
                movement("tr_in", "acct_alice", "acct_bob", 600),
                movement("tr_spent", "acct_bob", "acct_alice", 450),
                movement("tr_in2", "acct_alice", "acct_bob", 100),
            ]
        )
    )
    plain = rpc_error(
        lambda: funded.ReverseTransfer(
            pb.ReverseTransferRequest(transfer_id="tr_rev0", reversed_transfer_id="tr_in")
        )
    )
    assert reason_of(plain) == "INSUFFICIENT_FUNDS"
    reversal = funded.ReverseTransfer(
        pb.ReverseTransferRequest(
            transfer_id="tr_rev",
            reversed_transfer_id="tr_in",
            shortfall_account_id="acct_receivable",
        )
    ).transfer
    assert [(x.account_id, x.direction, x.amount) for x in reversal.legs] == [
        ("acct_alice", C, 600),
        ("acct_bob", D, 250),
        ("acct_receivable", D, 350),
    ]

    def balance(account_id: str) -> tuple[int, int]:
        found = funded.GetBalance(pb.GetBalanceRequest(account_id=account_id)).balance
        return found.posted, found.available

    assert balance("acct_bob") == (0, 0)
    assert balance("acct_receivable") == (350, 350)
    # The same through a batch item: bob has nothing left, so all of it is a shortfall.
    (result,) = funded.CreateTransfers(
        pb.CreateTransfersRequest(
            transfers=[
                pb.TransferSpec(
                    id="tr_rev2",
                    reversal=pb.Reversal(
                        transfer_id="tr_in2", shortfall_account_id="acct_receivable"
                    ),
                )
            ]
        )
    ).results
    assert result.ok, result.reason
    assert balance("acct_receivable") == (450, 450)
    assert balance("acct_bob") == (0, 0)
    bad = rpc_error(
        lambda: funded.ReverseTransfer(
            pb.ReverseTransferRequest(
                transfer_id="tr_rev3", reversed_transfer_id="tr_fund", shortfall_account_id="bob"
            )
        )
    )
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = bad_request(bad)
    assert details is not None
    assert [v.field for v in details.field_violations] == ["shortfall_account_id"]


def test_single_operation_calls_name_their_own_fields_in_violations(
    funded: LedgerServiceStub,
) -> None:
    calls: list[tuple[Callable[[], object], list[str]]] = [
        (
            lambda: funded.ReverseTransfer(
                pb.ReverseTransferRequest(transfer_id="x", reversed_transfer_id="acct_bob")
            ),
            ["transfer_id", "reversed_transfer_id"],
        ),
        (
            lambda: funded.PostPendingTransfer(
                pb.PostPendingTransferRequest(
                    transfer_id="tr_p", pending_transfer_id="", legs=[leg("acct_bob", D, 0)]
                )
            ),
            ["pending_transfer_id", "legs[0].amount"],
        ),
        (
            lambda: funded.VoidPendingTransfer(
                pb.VoidPendingTransferRequest(
                    transfer_id="tr_v", pending_transfer_id="nope", metadata={"": "v"}
                )
            ),
            ["metadata['']", "pending_transfer_id"],
        ),
    ]
    for call, fields in calls:
        details = bad_request(rpc_error(call))
        assert details is not None
        assert sorted(v.field for v in details.field_violations) == sorted(fields)


def test_lookup_returns_the_applied_transfers_asked_for_in_order(
    funded: LedgerServiceStub,
) -> None:
    funded.CreateTransfers(
        pb.CreateTransfersRequest(
            transfers=[
                movement("tr_one", "acct_alice", "acct_bob", 10),
                movement("tr_refused", "acct_bob", "acct_alice", 10**6),
                movement("tr_two", "acct_alice", "acct_bob", 20),
            ]
        )
    )
    funded.CreateTransfer(
        pb.CreateTransferRequest(
            transfer=pb.TransferSpec(
                id="tr_hold",
                pending=pb.PendingMovement(legs=[leg("acct_alice", D, 5), leg("acct_bob", C, 5)]),
            )
        )
    )
    funded.PostPendingTransfer(
        pb.PostPendingTransferRequest(
            transfer_id="tr_post",
            pending_transfer_id="tr_hold",
            legs=[leg("acct_alice", D, 3), leg("acct_bob", C, 3)],
        )
    )
    asked = ["tr_two", "tr_unknown", "tr_refused", "tr_one", "tr_two", "tr_post", "tr_hold"]
    found = funded.LookupTransfers(pb.LookupTransfersRequest(transfer_ids=asked)).transfers
    # Refused and unknown ids are left out; a repeated id is answered once.
    assert [t.id for t in found] == ["tr_two", "tr_one", "tr_post", "tr_hold"]
    by_id = {t.id: t for t in found}
    assert by_id == {
        tid: funded.GetTransfer(pb.GetTransferRequest(transfer_id=tid)).transfer for tid in by_id
    }
    assert [(g.account_id, g.amount) for g in by_id["tr_post"].legs] == [
        ("acct_alice", 3),
        ("acct_bob", 3),
    ]
    assert by_id["tr_hold"].status == pb.TRANSFER_STATUS_POSTED
    assert (
        funded.LookupTransfers(pb.LookupTransfersRequest(transfer_ids=["tr_unknown"])).transfers
        == []
    )
    for ids, field in (
        ([], "transfer_ids"),
        ([f"tr_{i}" for i in range(1001)], "transfer_ids"),
        (["tr_one", "acct_alice"], "transfer_ids[1]"),
    ):
        request = pb.LookupTransfersRequest(transfer_ids=ids)
        error = rpc_error(lambda: funded.LookupTransfers(request))  # noqa: B023 (called at once)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        details = bad_request(error)
        assert details is not None
        assert [v.field for v in details.field_violations] == [field]


def test_balance_as_of_past_instants_and_entry_history(
    funded: LedgerServiceStub, clock: MovableClock
) -> None:
    t_funded = clock.now()
    for i in range(5):
        clock.advance(timedelta(minutes=1))
        funded.CreateTransfer(
            pb.CreateTransferRequest(transfer=movement(f"tr_{i}", "acct_alice", "acct_bob", 100))
        )

    def posted_at(instant: object) -> int:
        request = pb.GetBalanceRequest(account_id="acct_alice", as_of=to_timestamp(instant))  # type: ignore[arg-type]
        return funded.GetBalance(request).balance.posted

    assert posted_at(t_funded - timedelta(seconds=1)) == 0
    assert posted_at(t_funded) == 1000
    assert posted_at(t_funded + timedelta(minutes=2, seconds=30)) == 800
    assert posted_at(clock.now()) == 500
    sequences, token = [], ""
    while True:
        page = funded.ListAccountEntries(
            pb.ListAccountEntriesRequest(account_id="acct_alice", page_size=2, page_token=token)
        )
        sequences += [(e.sequence, e.balance_after.posted) for e in page.entries]
        token = page.next_page_token
        if not token:
            break
    assert sequences == [(1, 1000), (2, 900), (3, 800), (4, 700), (5, 600), (6, 500)]


# --- bad input: refused with field violations, nothing written --------------------------


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (movement("tr_x", "acct_alice", "acct_bob", 0), "transfers[0].movement.legs[0].amount"),
        (movement("tr_x", "acct_alice", "acct_bob", -5), "transfers[0].movement.legs[0].amount"),
        (
            pb.TransferSpec(
                id="tr_x",
                movement=pb.Movement(legs=[leg("acct_alice", D, 5), leg("acct_bob", C, 6)]),
            ),
            "transfers[0].movement.legs",
        ),
        (
            pb.TransferSpec(
                id="tr_x",
                movement=pb.Movement(
                    legs=[leg("acct_alice", D, 5, "EUX"), leg("acct_bob", C, 5, "EUX")]
                ),
            ),
            "transfers[0].movement.legs[0].currency",
        ),
        (movement("tr_" + "x" * 200, "acct_alice", "acct_bob", 5), "transfers[0].id"),
        (
            movement("tr_x", "acct_alice", "acct_bob", 5, metadata={"k": "v" * 300}),
            "transfers[0].metadata['k']",
        ),
        (pb.TransferSpec(id="tr_x"), "transfers[0].operation"),
    ],
)
def test_bad_input_is_invalid_argument_with_violations_and_nothing_written(
    funded: LedgerServiceStub, ledger: Ledger, spec: pb.TransferSpec, field: str
) -> None:
    before = journal_counts(ledger)
    good = movement("tr_good", "acct_alice", "acct_bob", 1)
    error = rpc_error(
        lambda: funded.CreateTransfers(pb.CreateTransfersRequest(transfers=[good, spec]))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = bad_request(error)
    assert violations is not None
    fields = [v.field for v in violations.field_violations]
    assert field.replace("transfers[0]", "transfers[1]") in fields
    assert journal_counts(ledger) == before


def test_overflowing_int64_amount_cannot_even_be_encoded() -> None:
    with pytest.raises(ValueError, match="out of range"):
        pb.Leg(account_id="acct_a", direction=D, amount=2**63, currency="EUR")


def test_empty_and_oversize_batches_are_refused(funded: LedgerServiceStub, ledger: Ledger) -> None:
    before = journal_counts(ledger)
    empty = rpc_error(lambda: funded.CreateTransfers(pb.CreateTransfersRequest()))
    assert empty.code() == grpc.StatusCode.INVALID_ARGUMENT
    huge = [movement(f"tr_{i}", "acct_alice", "acct_bob", 1) for i in range(8190)]
    oversize = rpc_error(lambda: funded.CreateTransfers(pb.CreateTransfersRequest(transfers=huge)))
    violations = bad_request(oversize)
    assert violations is not None
    assert violations.field_violations[0].reason == "BATCH_TOO_LARGE"
    assert journal_counts(ledger) == before


def test_bad_account_input_writes_nothing(ledger_stub: LedgerServiceStub, ledger: Ledger) -> None:
    before = journal_counts(ledger)
    error = rpc_error(
        lambda: open_account(ledger_stub, "acct_z", currency="ZZZ", external_reference="r" * 500)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = bad_request(error)
    assert violations is not None
    assert {v.field for v in violations.field_violations} == {
        "account.currency",
        "account.external_reference",
    }
    assert journal_counts(ledger) == before


# --- the journal and the outbox ------------------------------------------------------------


def test_events_are_written_to_the_outbox_in_the_same_transaction(
    funded: LedgerServiceStub, ledger: Ledger
) -> None:
    funded.CreateTransfers(
        pb.CreateTransfersRequest(
            transfers=[movement(f"tr_e{i}", "acct_alice", "acct_bob", 1) for i in range(40)]
            + [movement("tr_fail", "acct_bob", "acct_ghost", 1)]
        )
    )
    with ledger.engine.connect() as c:
        rows = c.execute(
            text("SELECT event_type, ordering_key, payload FROM outbox ORDER BY id")
        ).all()
    types = [r[0] for r in rows]
    assert types.count("astra.ledger.v1.AccountOpened") == 3
    posted = [r for r in rows if r[0] == "astra.ledger.v1.TransferPosted"]
    assert len(posted) == 41  # funding + 40; the refused transfer has no event
    event = events_pb2.TransferPosted.FromString(posted[-1][2])
    assert event.transfer_id == posted[-1][1] == "tr_e39"
    assert {b.account_id: b.posted for b in event.balances} == {"acct_alice": 960, "acct_bob": 40}


def test_the_journal_cannot_be_edited(funded: LedgerServiceStub, ledger: Ledger) -> None:
    for statement in (
        "UPDATE transfers SET legs = '[]'",
        "DELETE FROM entries",
        "TRUNCATE transfers",
    ):
        with ledger.engine.connect() as c, pytest.raises(Exception, match="immutable"):
            c.execute(text(statement))


# --- as-of answers never change ----------------------------------------------------------


def test_an_as_of_answer_past_the_last_entry_stays_the_same_when_later_writers_lag(
    funded: LedgerServiceStub, ledger: Ledger, clock: MovableClock
) -> None:
    """A batch stamps before it commits, on its own process' clock: one whose clock
    lags may not stamp into an instant a reader has already answered for."""
    clock.advance(timedelta(seconds=5))
    asked = clock.now()

    def posted_at(instant: object) -> int:
        request = pb.GetBalanceRequest(account_id="acct_bob", as_of=to_timestamp(instant))  # type: ignore[arg-type]
        return funded.GetBalance(request).balance.posted

    assert posted_at(asked) == 0
    # A writer whose clock lags behind the instant answered for.
    clock.current = asked - timedelta(seconds=1)
    funded.CreateTransfer(
        pb.CreateTransferRequest(transfer=movement("tr_late", "acct_alice", "acct_bob", 7))
    )
    clock.current = asked
    assert posted_at(asked) == 0
    stamp = funded.GetTransfer(pb.GetTransferRequest(transfer_id="tr_late")).transfer.create_time
    assert stamp.ToDatetime(tzinfo=asked.tzinfo) > asked
    clock.current = asked + timedelta(seconds=1)
    assert posted_at(clock.now()) == 7


def test_an_as_of_read_waits_for_a_batch_that_stamped_its_instant_and_has_not_committed(
    funded: LedgerServiceStub, ledger: Ledger, clock: MovableClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = threading.Event()
    release = threading.Event()
    original_write = SqlLedgerRepository.write

    def write_then_wait(self: SqlLedgerRepository, outcome: BatchOutcome) -> None:
        original_write(self, outcome)
        if any(r.id == "tr_slow" for r in outcome.records):
            written.set()
            release.wait(30)

    monkeypatch.setattr(SqlLedgerRepository, "write", write_then_wait)
    clock.advance(timedelta(seconds=5))
    writer = threading.Thread(
        target=lambda: funded.CreateTransfer(
            pb.CreateTransferRequest(transfer=movement("tr_slow", "acct_alice", "acct_bob", 9))
        )
    )
    writer.start()
    assert written.wait(30)  # stamped at clock.now(), locked, not committed
    answers: list[int] = []
    request = pb.GetBalanceRequest(account_id="acct_bob", as_of=to_timestamp(clock.now()))
    reader = threading.Thread(
        target=lambda: answers.append(funded.GetBalance(request).balance.posted)
    )
    reader.start()
    reader.join(0.5)  # gives a reader that would not wait the time to answer
    release.set()
    writer.join()
    reader.join()
    assert [*answers, funded.GetBalance(request).balance.posted] == [9, 9]


def test_an_as_of_instant_in_the_future_is_answered_as_of_now(
    funded: LedgerServiceStub, clock: MovableClock
) -> None:
    future = clock.now() + timedelta(days=1)
    request = pb.GetBalanceRequest(account_id="acct_alice", as_of=to_timestamp(future))
    balance = funded.GetBalance(request).balance
    assert balance.as_of.ToDatetime(tzinfo=future.tzinfo) == clock.now()
    assert balance.posted == 1000


# --- the longest ids the contract allows, and sums at the int64 limit -----------------------

LONGEST = "x" * MAX_ID_BODY


def test_every_call_takes_the_longest_ids_the_contract_allows(
    ledger_stub: LedgerServiceStub, ledger: Ledger
) -> None:
    bank, wallet, receivable = (f"acct_{c}{LONGEST[1:]}" for c in "bwr")
    customer = f"cus_{LONGEST}"
    assert (len(bank), len(customer)) == (65, 64)
    open_account(ledger_stub, bank, normal_side=pb.NORMAL_SIDE_DEBIT)
    opened = open_account(
        ledger_stub, wallet, debits_must_not_exceed_credits=True, customer_id=customer
    )
    assert (opened.id, opened.customer_id) == (wallet, customer)
    open_account(ledger_stub, receivable, normal_side=pb.NORMAL_SIDE_DEBIT)
    ids = {name: f"tr_{name[0]}{LONGEST[1:]}" for name in ("move", "hold", "post", "void", "rev")}
    hold2 = f"tr_h2{LONGEST[2:]}"
    assert {len(i) for i in [*ids.values(), hold2]} == {63}
    ledger_stub.CreateTransfer(
        pb.CreateTransferRequest(transfer=movement(ids["move"], bank, wallet, 100))
    )
    for hold_id in (ids["hold"], hold2):
        ledger_stub.CreateTransfer(
            pb.CreateTransferRequest(
                transfer=pb.TransferSpec(
                    id=hold_id,
                    pending=pb.PendingMovement(legs=[leg(wallet, D, 10), leg(bank, C, 10)]),
                )
            )
        )
    ledger_stub.PostPendingTransfer(
        pb.PostPendingTransferRequest(
            transfer_id=ids["post"],
            pending_transfer_id=ids["hold"],
            legs=[leg(wallet, D, 4), leg(bank, C, 4)],
        )
    )
    ledger_stub.VoidPendingTransfer(
        pb.VoidPendingTransferRequest(transfer_id=ids["void"], pending_transfer_id=hold2)
    )
    # The wallet spends what it has left, so the reversal needs the shortfall account.
    spend = f"tr_s{LONGEST[1:]}"
    ledger_stub.CreateTransfer(pb.CreateTransferRequest(transfer=movement(spend, wallet, bank, 90)))
    reversal = ledger_stub.ReverseTransfer(
        pb.ReverseTransferRequest(
            transfer_id=ids["rev"],
            reversed_transfer_id=ids["move"],
            shortfall_account_id=receivable,
        )
    ).transfer
    assert sorted((x.account_id, x.amount) for x in reversal.legs) == sorted(
        [(wallet, 6), (receivable, 94), (bank, 100)]
    )
    assert (
        ledger_stub.GetTransfer(pb.GetTransferRequest(transfer_id=ids["rev"])).transfer.id
        == ids["rev"]
    )
    balance = ledger_stub.GetBalance(pb.GetBalanceRequest(account_id=wallet)).balance
    assert (balance.account_id, balance.posted) == (wallet, 0)
    entries = ledger_stub.ListAccountEntries(
        pb.ListAccountEntriesRequest(account_id=wallet, page_size=50)
    ).entries
    assert {e.transfer_id for e in entries} == {*ids.values(), hold2, spend}
    listed = ledger_stub.ListAccounts(pb.ListAccountsRequest(customer_id=customer)).accounts
    assert [a.id for a in listed] == [wallet]


def test_sums_at_the_int64_limit_are_refused_with_balance_overflow_on_every_kind(
    ledger_stub: LedgerServiceStub, ledger: Ledger
) -> None:
    top = 2**63 - 1
    open_account(ledger_stub, "acct_src", normal_side=pb.NORMAL_SIDE_DEBIT)
    open_account(ledger_stub, "acct_full")
    open_account(ledger_stub, "acct_other")
    open_account(ledger_stub, "acct_neg")
    before = journal_counts(ledger)

    def create(spec: pb.TransferSpec) -> str:
        try:
            ledger_stub.CreateTransfer(pb.CreateTransferRequest(transfer=spec))
        except grpc.RpcError as error:
            return f"{error.code().name}:{reason_of(error)}"
        return "ok"

    def pending(tid: str, src: str, dst: str, amount: int) -> pb.TransferSpec:
        legs = [leg(src, D, amount), leg(dst, C, amount)]
        return pb.TransferSpec(id=tid, pending=pb.PendingMovement(legs=legs))

    overflow = "FAILED_PRECONDITION:BALANCE_OVERFLOW"
    assert create(movement("tr_top", "acct_src", "acct_full", top)) == "ok"
    # Posting a hold onto the full account would take its credits past the top.
    assert create(pending("tr_h", "acct_other", "acct_full", 1)) == "ok"
    post = pb.TransferSpec(id="tr_p", post_pending=pb.PostPending(pending_transfer_id="tr_h"))
    assert create(post) == overflow
    void = pb.TransferSpec(id="tr_v", void_pending=pb.VoidPending(pending_transfer_id="tr_h"))
    assert create(void) == "ok"
    # Debits at the top, and a hold past what available can show.
    assert create(movement("tr_x", "acct_other", "acct_neg", 5)) == "ok"
    assert create(movement("tr_neg", "acct_neg", "acct_other", top)) == "ok"
    assert create(pending("tr_h2", "acct_neg", "acct_src", 10)) == overflow
    # A reversal whose debit would take the account past the top.
    assert create(pb.TransferSpec(id="tr_r", reversal=pb.Reversal(transfer_id="tr_x"))) == overflow
    for account_id in ("acct_src", "acct_full", "acct_other", "acct_neg"):
        balance = ledger_stub.GetBalance(pb.GetBalanceRequest(account_id=account_id)).balance
        assert balance.available >= -(2**63)
    assert journal_counts(ledger)[1] == before[1] + 8  # refusals are recorded too


def test_a_hold_with_a_timeout_carries_its_expiry_in_its_event(
    funded: LedgerServiceStub, ledger: Ledger
) -> None:
    held = funded.CreateTransfer(
        pb.CreateTransferRequest(
            transfer=pb.TransferSpec(
                id="tr_hold_ev",
                pending=pb.PendingMovement(
                    legs=[leg("acct_alice", D, 5), leg("acct_bob", C, 5)],
                    timeout=Duration(seconds=90),
                ),
            )
        )
    ).transfer
    with ledger.engine.connect() as c:
        payload = c.execute(
            text("SELECT payload FROM outbox WHERE event_type = :t ORDER BY id DESC LIMIT 1"),
            {"t": events_pb2.PendingTransferCreated.DESCRIPTOR.full_name},
        ).scalar_one()
    event = events_pb2.PendingTransferCreated.FromString(payload)
    assert event.HasField("expire_time")
    assert event.expire_time == held.expire_time
