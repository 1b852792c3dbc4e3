"""What payments refuses, and why: KYC, fraud rules, reviews, malformed requests, overdrafts.

Every refusal carries its stable reason, and nothing refused reaches the bank.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from astra.payments.v1 import payments_pb2 as pb
from chassis.grpc.status import bad_request, reason_of

from tests.identity_fixtures import (
    IdentityServer,
)
from tests.ledger_fixtures import LEDGER_AUTH
from tests.payments_fixtures import (
    REVIEWER,
    SandboxBank,
    Suite,
    make_suite,
    rpc_error,
)

RULES = {
    "fraud_max_amount": {"EUR": 50_000},
    "fraud_new_customer_max_amount": {"EUR": 30_000},
    "fraud_review_amount": {"EUR": 12_000},
    "fraud_velocity_max_count": 4,
    "fraud_velocity_max_amount": {"EUR": 40_000},
    "payout_fee_fixed": {"EUR": 100},
}


@pytest.fixture
def ruled(
    payments_db_url: str,
    sandbox_bank: SandboxBank,
    ledger_target: str,
    identity_server: IdentityServer,
) -> Iterator[Suite]:
    made, close = make_suite(payments_db_url, sandbox_bank, ledger_target, identity_server, **RULES)
    yield made
    close()


@pytest.fixture
def fee_suite(
    payments_db_url: str,
    sandbox_bank: SandboxBank,
    ledger_target: str,
    identity_server: IdentityServer,
) -> Iterator[Suite]:
    made, close = make_suite(
        payments_db_url, sandbox_bank, ledger_target, identity_server, payout_fee_fixed={"EUR": 100}
    )
    yield made
    close()


def refusal(call: object) -> tuple[grpc.StatusCode, str | None]:
    error = rpc_error(call)  # type: ignore[arg-type]
    return error.code(), reason_of(error)


def at_bank(suite: Suite) -> set[str]:
    return {p["reference"] for p in suite.bank.payments()}


FP = grpc.StatusCode.FAILED_PRECONDITION


def test_unverified_customers_cannot_move_money(suite: Suite) -> None:
    customer = suite.customer(verified=False)
    payment_id = suite.new_id("pay")
    assert refusal(lambda: suite.collection(customer, 500, payment_id=payment_id)) == (
        FP,
        "CUSTOMER_NOT_VERIFIED",
    )
    assert suite.get(payment_id).state == pb.PAYMENT_STATE_DECLINED
    unknown = rpc_error(lambda: suite.collection("cus_nobody", 500))
    assert (unknown.code(), reason_of(unknown)) == (grpc.StatusCode.NOT_FOUND, "CUSTOMER_NOT_FOUND")
    assert payment_id not in at_bank(suite)


def test_per_payment_limit_and_new_customer_cap(ruled: Suite) -> None:
    customer = ruled.customer()
    over = ruled.new_id("pay")
    assert refusal(lambda: ruled.collection(customer, 50_001, payment_id=over)) == (
        FP,
        "AMOUNT_OVER_LIMIT",
    )
    # Every customer created in the test is new: the lower cap applies.
    new = ruled.new_id("pay")
    assert refusal(lambda: ruled.collection(customer, 30_001, payment_id=new)) == (
        FP,
        "NEW_CUSTOMER_LIMIT_EXCEEDED",
    )
    assert not {over, new} & at_bank(ruled)


def test_velocity_count_and_amount(ruled: Suite) -> None:
    counted = ruled.customer()
    ruled.fund(counted, 10_000)
    for _ in range(3):
        ruled.wait_for(ruled.payout(counted, 1_000).id)
    fifth = ruled.new_id("pay")
    assert refusal(lambda: ruled.payout(counted, 1_000, payment_id=fifth)) == (
        FP,
        "VELOCITY_COUNT_EXCEEDED",
    )
    summed = ruled.customer()
    ruled.fund(summed, 11_000)
    ruled.wait_for(ruled.collection(summed, 11_000).id)
    ruled.wait_for(ruled.collection(summed, 11_000).id)
    too_much = ruled.new_id("pay")
    assert refusal(lambda: ruled.payout(summed, 8_000, payment_id=too_much)) == (
        FP,
        "VELOCITY_AMOUNT_EXCEEDED",
    )
    assert not {fifth, too_much} & at_bank(ruled)
    assert ruled.customer_balance(counted) == 10_000 - 3 * 1_100


def test_review_holds_then_approve_or_reject(ruled: Suite) -> None:
    customer = ruled.customer()
    big = ruled.collection(customer, 12_000)
    assert (big.state, big.review_reason) == (pb.PAYMENT_STATE_IN_REVIEW, "LARGE_AMOUNT")
    assert big.id not in at_bank(ruled)
    approved = ruled.reviewer.ApprovePayment(pb.ApprovePaymentRequest(payment_id=big.id)).payment
    assert approved.state == pb.PAYMENT_STATE_SUBMITTING
    assert ruled.wait_for(big.id).state == pb.PAYMENT_STATE_SETTLED
    ruled.fund(customer, 1_000)
    held = ruled.payout(customer, 12_000)
    assert held.state == pb.PAYMENT_STATE_IN_REVIEW
    # Funds are held while the reviewer looks.
    assert ruled.customer_balance(customer) == 13_000 - 12_100
    rejected = ruled.reviewer.RejectPayment(pb.RejectPaymentRequest(payment_id=held.id)).payment
    assert (rejected.state, rejected.reason) == (pb.PAYMENT_STATE_DECLINED, "REJECTED_IN_REVIEW")
    ruled.wait_for(held.id)
    assert ruled.customer_balance(customer) == 13_000
    assert held.id not in at_bank(ruled)
    # A decision is final: approving a rejected payment is an illegal transition.
    late = rpc_error(
        lambda: ruled.reviewer.ApprovePayment(pb.ApprovePaymentRequest(payment_id=held.id))
    )
    assert (late.code(), reason_of(late)) == (FP, "ILLEGAL_TRANSITION")


PD = grpc.StatusCode.PERMISSION_DENIED


def test_a_payment_in_review_is_decided_by_another_client_and_never_by_a_customer(
    ruled: Suite,
) -> None:
    customer = ruled.customer()
    held = ruled.collection(customer, 12_000)
    assert held.state == pb.PAYMENT_STATE_IN_REVIEW
    approve = pb.ApprovePaymentRequest(payment_id=held.id)
    reject = pb.RejectPaymentRequest(payment_id=held.id)
    # The client that created it cannot wave it through (nor decide it at all): four eyes.
    assert refusal(lambda: ruled.payments.ApprovePayment(approve)) == (PD, "REVIEWER_IS_REQUESTER")
    assert refusal(lambda: ruled.payments.RejectPayment(reject)) == (PD, "REVIEWER_IS_REQUESTER")
    # A customer token decides no review, not even of its own payment, whatever its scopes.
    token = LEDGER_AUTH.customer_token(
        customer, ["payments.payments.review", "payments.payments.read"]
    )
    metadata = (("authorization", f"Bearer {token}"),)
    for call in (
        lambda: ruled.reviewer.ApprovePayment(approve, metadata=metadata),
        lambda: ruled.reviewer.RejectPayment(reject, metadata=metadata),
    ):
        assert refusal(call) == (PD, "SERVICE_CALLER_REQUIRED")
    unreviewed = ruled.get(held.id)
    assert unreviewed.state == pb.PAYMENT_STATE_IN_REVIEW
    # The refusals wrote nothing: no reviewer, no note.
    assert (unreviewed.HasField("reviewed_by"), unreviewed.review_note) == (False, "")
    assert (unreviewed.created_by.client_id, unreviewed.created_by.customer_id) == ("cli_test", "")
    approved = ruled.reviewer.ApprovePayment(
        pb.ApprovePaymentRequest(payment_id=held.id, note="checked the invoice"),
        metadata=(("x-request-id", "req-approve"),),
    ).payment
    assert approved.state == pb.PAYMENT_STATE_SUBMITTING
    shown = ruled.get(held.id)
    assert (shown.reviewed_by.client_id, shown.reviewed_by.request_id, shown.review_note) == (
        REVIEWER,
        "req-approve",
        "checked the invoice",
    )
    with ruled.app.deps.uow() as uow:
        recorded = uow.payments.get(held.id)
    assert recorded is not None
    assert recorded.created_by is not None
    assert recorded.reviewed_by is not None
    assert (recorded.created_by.client_id, recorded.reviewed_by.client_id) == ("cli_test", REVIEWER)
    # Approving again is idempotent for the reviewer, still refused to the creator.
    assert ruled.reviewer.ApprovePayment(approve).payment.id == held.id
    assert refusal(lambda: ruled.payments.ApprovePayment(approve)) == (PD, "REVIEWER_IS_REQUESTER")


def test_refunds_only_of_settled_collections(suite: Suite) -> None:
    customer = suite.customer()
    suite.fund(customer, 5_000)
    payout = suite.wait_for(suite.payout(customer, 1_000).id)
    refund = rpc_error(
        lambda: suite.payments.RefundPayment(
            pb.RefundPaymentRequest(refund_id=suite.new_id("pay"), payment_id=payout.id, amount=1)
        )
    )
    assert (refund.code(), reason_of(refund)) == (FP, "PAYMENT_NOT_REFUNDABLE")


def test_malformed_requests_name_each_field(suite: Suite) -> None:
    error = rpc_error(
        lambda: suite.payments.CreatePayout(
            pb.CreatePayoutRequest(
                payment_id="order 1",
                customer_id="",
                amount=-5,
                currency="EURO",
                destination=pb.BankAccount(account_number=""),
            )
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = bad_request(error)
    assert details is not None
    assert {v.field for v in details.field_violations} == {
        "payment_id",
        "customer_id",
        "amount",
        "currency",
        "destination.account_number",
    }
    missing = rpc_error(lambda: suite.get("pay_nothing_here"))
    assert (missing.code(), reason_of(missing)) == (grpc.StatusCode.NOT_FOUND, "PAYMENT_NOT_FOUND")
    assert suite.bank.payments() == []


def test_concurrent_payouts_never_overdraw(fee_suite: Suite) -> None:
    ruled = fee_suite
    customer = ruled.customer()
    ruled.fund(customer, 10_000)
    attempts = 30

    def try_payout(_: int) -> tuple[str, str | None]:
        payment_id = ruled.new_id("pay")
        try:
            ruled.payout(customer, 1_000, payment_id=payment_id)
        except grpc.RpcError as error:
            return payment_id, reason_of(error)
        return payment_id, None

    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(try_payout, range(attempts)))
    accepted = [pid for pid, reason in outcomes if reason is None]
    reasons = {reason for _, reason in outcomes if reason is not None}
    # 1,000 + 100 fee each out of 10,000: nine fit, whatever the interleaving.
    assert len(accepted) == 9
    assert reasons == {"INSUFFICIENT_FUNDS"}
    finals = [ruled.wait_for(pid) for pid in accepted]
    assert {p.state for p in finals} == {pb.PAYMENT_STATE_SETTLED}
    balance = ruled.balance(finals[0].ledger_account_id)
    assert balance.available >= 0
    assert balance.posted == 10_000 - 1_100 * len(accepted)
    assert len([r for r in at_bank(ruled) if r in accepted]) == len(accepted)
