"""Payments at its limits, over gRPC on PostgreSQL with the real ledger, identity and bank.

- Amounts: a payment whose fee would take it past int64, or above its currency's
  maximum, is refused at the edge (INVALID_ARGUMENT on ``amount``), nothing written.
- A payment that cannot progress does not stall others and does not stay
  unnoticed: it ends DECLINED when the ledger can never take its hold, or shows
  in ``payments_stuck`` (and a log line) while it is retried, and stays cancellable.
- House accounts: near the limit of their running totals new payments in the
  currency are refused (CURRENCY_CAPACITY_EXHAUSTED) while the payments already
  accepted still book.
- Every id and text at its contract's maximum goes through every RPC.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import grpc
import pytest
from astra.identity.v1 import identity_pb2 as ipb
from astra.ledger.v1 import ledger_pb2 as lpb
from astra.payments.v1 import payments_pb2 as pb
from chassis.grpc.status import bad_request, reason_of
from chassis.kernel.money import MAX_AMOUNT
from payments.domain.ledger_plan import clearing_account_id, customer_account_id
from payments.domain.model import BankAccount, Payment, PaymentRequest
from payments.domain.states import PaymentKind
from payments.entrypoints.workers import states_sampler_of
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from tests.integration.test_payments_isolation import FailingHolds
from tests.payments_fixtures import Suite, make_suite, rpc_error

FEE = 100
DESTINATION = "DE89370400440532013000"


def limited_suite(request: pytest.FixtureRequest, **overrides: object) -> Iterator[Suite]:
    made, close = make_suite(
        request.getfixturevalue("payments_db_url"),
        request.getfixturevalue("sandbox_bank"),
        request.getfixturevalue("ledger_target"),
        request.getfixturevalue("identity_server"),
        **overrides,
    )
    yield made
    close()


@pytest.fixture
def fee_suite(request: pytest.FixtureRequest) -> Iterator[Suite]:
    # No per-currency maximum below int64 for EUR: only the fee's arithmetic limits it.
    yield from limited_suite(
        request,
        payout_fee_fixed={"EUR": FEE},
        amount_max={"EUR": MAX_AMOUNT},
        stuck_after_retries=2,
    )


def refusal(call: Callable[[], object]) -> tuple[grpc.StatusCode, str | None]:
    error = rpc_error(call)
    return error.code(), reason_of(error)


def amount_refused(call: Callable[[], object]) -> None:
    error = rpc_error(call)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    details = bad_request(error)
    assert details is not None
    assert [(v.field, v.reason) for v in details.field_violations] == [
        ("amount", "AMOUNT_OUT_OF_RANGE")
    ]


def missing(suite: Suite, payment_id: str) -> bool:
    return bool(rpc_error(lambda: suite.get(payment_id)).code() == grpc.StatusCode.NOT_FOUND)


def drive(suite: Suite, until: Callable[[], bool], what: str) -> None:
    """Run worker rounds by hand until ``until()``."""
    deadline = time.monotonic() + 60
    while not until():
        assert time.monotonic() < deadline, what
        suite.process_due()
        suite.follow_bank_feed()


# --- amounts -------------------------------------------------------------------------------------


def test_a_payout_whose_fee_takes_it_past_int64_is_refused_at_the_edge(fee_suite: Suite) -> None:
    suite = fee_suite
    customer = suite.customer()
    suite.fund(customer, 10_000)
    payment_id = suite.new_id("pay")
    amount_refused(lambda: suite.payout(customer, MAX_AMOUNT - FEE // 2, payment_id=payment_id))
    assert missing(suite, payment_id)
    # The largest payout whose fee still fits is only short of funds: an ordinary refusal.
    assert refusal(lambda: suite.payout(customer, MAX_AMOUNT - FEE)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_FUNDS",
    )


def test_an_amount_above_its_currencys_maximum_is_refused_and_the_maximum_settles(
    suite: Suite,
) -> None:
    customer = suite.customer()
    largest = 10**9 * 100  # the default: a billion major units of EUR
    payment_id = suite.new_id("pay")
    amount_refused(lambda: suite.collection(customer, MAX_AMOUNT, payment_id=payment_id))
    amount_refused(lambda: suite.collection(customer, largest + 1))
    assert missing(suite, payment_id)
    assert suite.fund(customer, largest).amount == largest
    amount_refused(lambda: suite.payout(customer, largest + 1))


def legacy_payout(suite: Suite, customer: str, amount: int, fee: int) -> Payment:
    """A payout recorded as an older version accepted it, before the edge checked amounts."""
    now = datetime.now(UTC)
    request = PaymentRequest(
        payment_id=suite.new_id("pay_legacy"),
        kind=PaymentKind.PAYOUT,
        customer_id=customer,
        amount=amount,
        currency="EUR",
        counterparty=BankAccount(DESTINATION, "Bob"),
    )
    payment = Payment.create(
        request, fee=fee, ledger_account_id=customer_account_id(customer, "EUR"), now=now
    )
    payment.next_action_at = now
    with suite.app.deps.uow() as uow:
        uow.payments.add(payment)
        uow.commit()
    return payment


def test_a_payout_the_ledger_can_never_hold_ends_declined_and_stalls_no_one(
    fee_suite: Suite,
) -> None:
    suite = fee_suite
    customer = suite.customer()
    suite.fund(customer, 10_000)
    suite.stop_rounds()  # rounds are run by hand below
    legacy = legacy_payout(suite, customer, MAX_AMOUNT - 10, FEE)
    good = suite.payout(customer, 1_000)
    assert good.state == pb.PAYMENT_STATE_FUNDS_HELD
    # One round claims both: the legacy hold cannot be expressed, the good one goes to the bank.
    suite.process_due()
    declined = suite.get(legacy.id)
    assert (declined.state, declined.reason) == (
        pb.PAYMENT_STATE_DECLINED,
        "INVALID_LEDGER_OPERATION",
    )
    assert suite.get(good.id).state != pb.PAYMENT_STATE_FUNDS_HELD
    drive(suite, lambda: suite.get(good.id).state == pb.PAYMENT_STATE_SETTLED, "good payout")
    assert suite.customer_balance(customer) == 10_000 - 1_000 - FEE
    assert legacy.id not in {p["reference"] for p in suite.bank.payments()}


def stuck_count(suite: Suite) -> int:
    with suite.app.deps.uow() as uow:
        return uow.payments.count_stuck(suite.app.deps.policy.stuck_after)


def test_a_hold_that_keeps_failing_is_reported_as_stuck_and_the_payout_stays_cancellable(
    fee_suite: Suite,
) -> None:
    suite = fee_suite
    customer = suite.customer()
    suite.fund(customer, 10_000)
    suite.stop_rounds()
    payment_id = suite.new_id("pay")
    deps = suite.app.deps
    real = deps.ledger
    deps.ledger = FailingHolds(real, payment_id)
    try:
        # No answer for its hold: the caller still gets its payment, as committed.
        created = suite.payout(customer, 1_000, payment_id=payment_id)
        assert created.state == pb.PAYMENT_STATE_CREATED
        with capture_logs() as logs:
            drive(suite, lambda: stuck_count(suite) == 1, "the payout never counted as stuck")
        assert [e["payment_id"] for e in logs if e["event"] == "payment cannot progress"] == [
            payment_id
        ]
        sampler = states_sampler_of(suite.app).start()
        try:
            deadline = time.monotonic() + 30
            while REGISTRY.get_sample_value("payments_stuck") != 1:
                assert time.monotonic() < deadline, "payments_stuck never showed it"
                time.sleep(0.05)
        finally:
            sampler.stop()
        canceled = suite.payments.CancelPayment(
            pb.CancelPaymentRequest(payment_id=payment_id)
        ).payment
        assert canceled.state == pb.PAYMENT_STATE_CANCELED
    finally:
        deps.ledger = real
    drive(suite, lambda: not suite.get(payment_id).ledger_pending, "the void never happened")
    assert stuck_count(suite) == 0
    assert suite.customer_balance(customer) == 10_000


# --- house accounts near their limit -----------------------------------------------------------


def test_near_its_limit_a_house_account_stops_new_payments_and_books_the_accepted_ones(
    suite: Suite,
) -> None:
    customer = suite.customer()
    suite.fund(customer, 10_000)
    clearing = clearing_account_id("EUR")
    # Clearing's debits near the int64 limit, as decades of collections would leave them.
    filler = "acct_test_filler_EUR"
    suite.ledger.OpenAccount(
        lpb.OpenAccountRequest(
            account=lpb.Account(id=filler, currency="EUR", normal_side=lpb.NORMAL_SIDE_CREDIT)
        )
    )
    bulk = int(MAX_AMOUNT * 0.95)
    suite.ledger.CreateTransfer(
        lpb.CreateTransferRequest(
            transfer=lpb.TransferSpec(
                id="tr_test_filler",
                movement=lpb.Movement(
                    legs=[
                        lpb.Leg(
                            account_id=clearing,
                            direction=lpb.DIRECTION_DEBIT,
                            amount=bulk,
                            currency="EUR",
                        ),
                        lpb.Leg(
                            account_id=filler,
                            direction=lpb.DIRECTION_CREDIT,
                            amount=bulk,
                            currency="EUR",
                        ),
                    ]
                ),
            )
        )
    )
    # Accepted before payments read the totals again: these must still book.
    payout = suite.payout(customer, 1_000)
    collection = suite.collection(customer, 2_000)
    with capture_logs() as logs:
        readings = suite.app.deps.capacity.refresh(suite.app.deps.ledger)
    assert [(r.currency, r.account_id) for r in readings] == [("EUR", clearing)]
    assert readings[0].usage >= 0.95
    assert any(e["event"].startswith("house account near its limit") for e in logs)
    usage = REGISTRY.get_sample_value("payments_house_account_usage_ratio", {"account": clearing})
    assert usage is not None
    assert usage >= 0.95
    for create in (suite.payout, suite.collection):
        payment_id = suite.new_id("pay")
        error = rpc_error(lambda: create(customer, 500, payment_id=payment_id))  # noqa: B023
        assert (error.code(), reason_of(error)) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "CURRENCY_CAPACITY_EXHAUSTED",
        )
        assert clearing in (error.details() or "")
        assert missing(suite, payment_id)
    # A retry of an accepted payment is a replay, whatever the capacity now.
    assert suite.payout(customer, 1_000, payment_id=payout.id).id == payout.id
    for accepted in (payout, collection):
        done = suite.wait_for(accepted.id)
        assert done.state == pb.PAYMENT_STATE_SETTLED
        assert not done.ledger_pending
    assert suite.customer_balance(customer) == 10_000 - 1_000 + 2_000


# --- every id and text at its maximum -------------------------------------------------------------


def body(length: int, fill: str) -> str:
    return (fill * length)[:length]


def verified(suite: Suite, customer_id: str) -> str:
    """A customer with an id at the given length, taken through KYC (request ids kept short)."""
    suite.identity.CreateCustomer(
        ipb.CreateCustomerRequest(
            customer=ipb.Customer(
                id=customer_id, display_name="Zoë " * 50, email=f"{len(customer_id)}@example.com"
            )
        )
    )
    suite.identity.SubmitKyc(
        ipb.SubmitKycRequest(request_id=suite.new_id("kyc"), customer_id=customer_id)
    )
    suite.identity.ReviewKyc(
        ipb.ReviewKycRequest(
            request_id=suite.new_id("kyc"),
            customer_id=customer_id,
            decision=ipb.KYC_DECISION_APPROVE,
        )
    )
    return customer_id


@pytest.mark.parametrize(
    "customer_body",
    [51, 52, 60],
    ids=["longest-spelled-out-account", "shortest-digest-account", "longest-customer-id"],
)
def test_every_id_and_text_at_its_maximum_goes_through_every_rpc(
    suite: Suite, customer_body: int
) -> None:
    customer = verified(suite, "cus_" + body(customer_body, "Cc9_-"))
    account = "DE" + "4" * 32  # 34 characters
    name, text = "Ø" * 140, "€ñ漢" * 46 + "xx"  # 140 characters, most of them not ASCII
    assert len(text) == 140

    def pay_id(fill: str) -> str:
        return "pay_" + body(48, fill + suite.new_id("x")[2:])

    collection_id, payout_id, refund_id = pay_id("c"), pay_id("p"), pay_id("r")
    collected = suite.payments.CreateCollection(
        pb.CreateCollectionRequest(
            payment_id=collection_id,
            customer_id=customer,
            amount=10_000,
            currency="EUR",
            source=pb.BankAccount(account_number=account, holder_name=name),
            description=text,
        )
    ).payment
    assert len(collected.ledger_account_id) <= 64
    assert suite.wait_for(collection_id).state == pb.PAYMENT_STATE_SETTLED
    paid = suite.payments.CreatePayout(
        pb.CreatePayoutRequest(
            payment_id=payout_id,
            customer_id=customer,
            amount=3_000,
            currency="EUR",
            destination=pb.BankAccount(account_number=account, holder_name=name),
            description=text,
        )
    ).payment
    assert (paid.counterparty.holder_name, paid.description) == (name, text)
    assert suite.wait_for(payout_id).state == pb.PAYMENT_STATE_SETTLED
    refund = suite.payments.RefundPayment(
        pb.RefundPaymentRequest(
            refund_id=refund_id, payment_id=collection_id, amount=2_000, reason=text
        )
    ).refund
    assert suite.wait_for(refund.id).state == pb.PAYMENT_STATE_SETTLED
    # Changes a settled payment cannot take are refused for what they are, not for their size.
    late = [
        lambda: suite.payments.CancelPayment(
            pb.CancelPaymentRequest(payment_id=payout_id, reason=text)
        ),
        lambda: suite.reviewer.ApprovePayment(
            pb.ApprovePaymentRequest(payment_id=payout_id, note=text)
        ),
        lambda: suite.reviewer.RejectPayment(
            pb.RejectPaymentRequest(payment_id=payout_id, note=text)
        ),
    ]
    for call in late:
        assert refusal(call) == (grpc.StatusCode.FAILED_PRECONDITION, "ILLEGAL_TRANSITION")
    listed = suite.payments.ListPayments(pb.ListPaymentsRequest(customer_id=customer)).payments
    assert {p.id for p in listed} == {collection_id, payout_id, refund_id}
    run_id = "rec_" + body(60, suite.new_id("r")[2:] + "R")
    run = suite.payments.RunReconciliation(
        pb.RunReconciliationRequest(
            run_id=run_id, statement_date=datetime.now(UTC).date().isoformat()
        )
    ).run
    assert list(run.breaks) == []
    got = suite.payments.GetReconciliationRun(pb.GetReconciliationRunRequest(run_id=run_id))
    assert got.run == run
    assert suite.customer_balance(customer) == 10_000 - 3_000 - 2_000


def test_ids_past_their_maximum_or_malformed_are_invalid_arguments_everywhere(
    suite: Suite,
) -> None:
    too_long_customer, nul_customer = "cus_" + "c" * 61, "cus_a\x00b"
    too_long_run, nul_run = "rec_" + "r" * 61, "rec_a\x00b"
    calls: dict[str, list[Callable[[], object]]] = {
        "customer_id": [
            lambda: suite.payments.ListPayments(
                pb.ListPaymentsRequest(customer_id=too_long_customer)
            ),
            lambda: suite.payments.ListPayments(pb.ListPaymentsRequest(customer_id=nul_customer)),
            lambda: suite.collection(too_long_customer, 100),
        ],
        "run_id": [
            lambda: suite.payments.GetReconciliationRun(
                pb.GetReconciliationRunRequest(run_id=too_long_run)
            ),
            lambda: suite.payments.GetReconciliationRun(
                pb.GetReconciliationRunRequest(run_id=nul_run)
            ),
        ],
        "payment_id": [lambda: suite.get("pay_" + "p" * 49)],
        # The last day there is: its statement would end on a day that is not.
        "statement_date": [
            lambda: suite.payments.RunReconciliation(
                pb.RunReconciliationRequest(run_id="rec_last", statement_date="9999-12-31")
            )
        ],
    }
    for field, refused in calls.items():
        for call in refused:
            error = rpc_error(call)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, error)
            details = bad_request(error)
            assert details is not None
            assert [v.field for v in details.field_violations] == [field]
