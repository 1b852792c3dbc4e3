"""Payments on PostgreSQL with the real ledger, identity and sandbox bank: the money paths.

Collections credit the customer only on settlement; payouts hold amount + fee at
once, post on settlement, void on failure or cancel; refunds never exceed the
collection; returns reverse the booking. Ledger balances, payment states,
history and outbox events agree at the end of each test.
"""

from __future__ import annotations

import grpc
from astra.ledger.v1 import ledger_pb2 as lpb
from astra.payments.v1 import events_pb2 as ev
from astra.payments.v1 import payments_pb2 as pb
from chassis.grpc.status import reason_of
from payments.adapters import tables
from payments.domain.ledger_plan import (
    clearing_account_id,
    customer_account_id,
    returns_receivable_account_id,
)
from payments.domain.model import LedgerStep, transfer_id
from sqlalchemy import select

from tests.payments_fixtures import (
    Suite,
    rpc_error,
)

S = pb


def states(payment: pb.Payment) -> list[int]:
    return [t.to_state for t in payment.history]


def outbox_events(suite: Suite) -> list[ev.PaymentStateChanged]:
    with suite.app.engine.connect() as connection:
        rows = connection.execute(
            select(tables.outbox.c.event_type, tables.outbox.c.payload).order_by(tables.outbox.c.id)
        ).all()
    found = []
    for event_type, payload in rows:
        if event_type == ev.PaymentStateChanged.DESCRIPTOR.full_name:
            found.append(ev.PaymentStateChanged.FromString(payload))
    return found


def test_collection_credits_the_customer_on_settlement(suite: Suite) -> None:
    customer = suite.customer()
    created = suite.collection(customer, 10_000)
    assert created.kind == S.PAYMENT_KIND_COLLECTION
    settled = suite.wait_for(created.id)
    assert settled.state == S.PAYMENT_STATE_SETTLED
    assert states(settled) == [
        S.PAYMENT_STATE_CREATED,
        S.PAYMENT_STATE_SUBMITTING,
        S.PAYMENT_STATE_SUBMITTED,
        S.PAYMENT_STATE_SETTLED,
    ]
    assert settled.bank_payment_id.startswith("bpm_")
    assert suite.customer_balance(customer) == 10_000
    assert suite.clearing().posted == 10_000
    # Each transition was written to the outbox in its own transaction's commit.
    changes = [e for e in outbox_events(suite) if e.payment.id == created.id]
    assert [(e.previous_state, e.state) for e in changes] == [
        (S.PAYMENT_STATE_UNSPECIFIED, S.PAYMENT_STATE_CREATED),
        (S.PAYMENT_STATE_CREATED, S.PAYMENT_STATE_SUBMITTING),
        (S.PAYMENT_STATE_SUBMITTING, S.PAYMENT_STATE_SUBMITTED),
        (S.PAYMENT_STATE_SUBMITTED, S.PAYMENT_STATE_SETTLED),
    ]


def test_payout_holds_amount_and_fee_then_posts_on_settlement(suite: Suite) -> None:
    customer = suite.customer()
    suite.fund(customer, 50_000)
    created = suite.payout(customer, 20_000)
    assert created.state == S.PAYMENT_STATE_FUNDS_HELD
    held = suite.balance(created.ledger_account_id)
    assert held.available == 50_000 - 20_000 - created.fee
    settled = suite.wait_for(created.id)
    assert settled.state == S.PAYMENT_STATE_SETTLED
    assert states(settled) == [
        S.PAYMENT_STATE_CREATED,
        S.PAYMENT_STATE_FUNDS_HELD,
        S.PAYMENT_STATE_SUBMITTING,
        S.PAYMENT_STATE_SUBMITTED,
        S.PAYMENT_STATE_SETTLED,
    ]
    balance = suite.balance(created.ledger_account_id)
    assert (balance.posted, balance.pending) == (50_000 - 20_000 - created.fee, 0)
    assert suite.clearing().posted == 50_000 - 20_000
    bank = {p["reference"]: p for p in suite.bank.payments()}
    assert bank[created.id]["amount"] == 20_000
    assert bank[created.id]["type"] == "credit_transfer"


def test_refunds_are_partial_and_never_exceed_the_collection(suite: Suite) -> None:
    customer = suite.customer()
    collected = suite.fund(customer, 10_000)
    first = suite.payments.RefundPayment(
        pb.RefundPaymentRequest(
            refund_id=suite.new_id("pay"), payment_id=collected.id, amount=6_000
        )
    ).refund
    assert (first.kind, first.original_payment_id) == (S.PAYMENT_KIND_REFUND, collected.id)
    too_much = rpc_error(
        lambda: suite.payments.RefundPayment(
            pb.RefundPaymentRequest(
                refund_id=suite.new_id("pay"), payment_id=collected.id, amount=4_001
            )
        )
    )
    assert too_much.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(too_much) == "REFUND_EXCEEDS_PAYMENT"
    assert suite.wait_for(first.id).state == S.PAYMENT_STATE_SETTLED
    assert suite.customer_balance(customer) == 4_000
    assert suite.get(collected.id).refunded_amount == 6_000
    bank = {p["reference"]: p for p in suite.bank.payments()}
    assert bank[first.id]["counterparty"]["account_number"] == collected.counterparty.account_number


def test_a_payout_with_insufficient_funds_is_declined_and_never_reaches_the_bank(
    suite: Suite,
) -> None:
    customer = suite.customer()
    suite.fund(customer, 1_000)
    payment_id = suite.new_id("pay")
    refused = rpc_error(lambda: suite.payout(customer, 5_000, payment_id=payment_id))
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(refused) == "INSUFFICIENT_FUNDS"
    # The refusal was recorded: a replay gives the same answer.
    again = rpc_error(lambda: suite.payout(customer, 5_000, payment_id=payment_id))
    assert reason_of(again) == "INSUFFICIENT_FUNDS"
    declined = suite.get(payment_id)
    assert declined.state == S.PAYMENT_STATE_DECLINED
    assert payment_id not in {p["reference"] for p in suite.bank.payments()}
    assert suite.customer_balance(customer) == 1_000


def test_cancel_before_submission_releases_the_hold_and_is_refused_after(suite: Suite) -> None:
    customer = suite.customer()
    suite.fund(customer, 10_000)
    # Stop the workers so the payout stays FUNDS_HELD while it is canceled.
    suite.stop_rounds()
    held = suite.payout(customer, 3_000)
    canceled = suite.payments.CancelPayment(pb.CancelPaymentRequest(payment_id=held.id)).payment
    assert canceled.state == S.PAYMENT_STATE_CANCELED
    assert canceled.reason == "CANCELED_BY_CLIENT"
    # Canceling again returns it as it is.
    again = suite.payments.CancelPayment(pb.CancelPaymentRequest(payment_id=held.id)).payment
    assert again.state == S.PAYMENT_STATE_CANCELED
    suite.process_due()
    assert not suite.get(held.id).ledger_pending
    assert suite.customer_balance(customer) == 10_000
    submitted = suite.payout(customer, 2_000)
    suite.process_due()  # claims it for the bank: SUBMITTING
    late = rpc_error(
        lambda: suite.payments.CancelPayment(pb.CancelPaymentRequest(payment_id=submitted.id))
    )
    assert late.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(late) == "ILLEGAL_TRANSITION"
    assert held.id not in {p["reference"] for p in suite.bank.payments()}


def test_a_bank_failure_voids_the_hold(suite: Suite) -> None:
    customer = suite.customer()
    suite.fund(customer, 10_000)
    closed = suite.payout(customer, 1_000, account="DE00000000000000009902")
    failed = suite.wait_for(closed.id)
    assert (failed.state, failed.reason) == (S.PAYMENT_STATE_FAILED, "BANK_ACCOUNT_CLOSED")
    later = suite.payout(customer, 1_000, account="DE00000000000000009903")
    failed_later = suite.wait_for(later.id)
    assert failed_later.state == S.PAYMENT_STATE_FAILED
    assert failed_later.reason == "BANK_INSUFFICIENT_FUNDS"
    assert suite.customer_balance(customer) == 10_000
    assert suite.balance(closed.ledger_account_id).pending == 0


def test_a_return_after_settlement_reverses_the_payout(suite: Suite) -> None:
    customer = suite.customer()
    suite.fund(customer, 10_000)
    payout = suite.payout(customer, 4_000, account="DE00000000000000009904")
    returned = suite.wait_for(payout.id, {S.PAYMENT_STATE_RETURNED})
    assert states(returned)[-2:] == [S.PAYMENT_STATE_SETTLED, S.PAYMENT_STATE_RETURNED]
    assert returned.reason == "BANK_RETURNED"
    assert suite.customer_balance(customer) == 10_000
    assert suite.clearing().posted == 10_000


def test_a_return_of_a_spent_collection_books_the_shortfall_as_a_receivable(
    suite: Suite,
) -> None:
    customer = suite.customer()
    collected = suite.fund(customer, 10_000)
    payout = suite.payout(customer, 7_000)
    assert suite.wait_for(payout.id).state == S.PAYMENT_STATE_SETTLED
    left = suite.customer_balance(customer)  # what the payout and its fee did not take
    assert 0 < left <= 3_000
    suite.bank.return_payment(collected.bank_payment_id)
    returned = suite.wait_for(collected.id, {S.PAYMENT_STATE_RETURNED})
    assert states(returned)[-2:] == [S.PAYMENT_STATE_SETTLED, S.PAYMENT_STATE_RETURNED]
    # The customer gave back all it had; the receivable holds what it owes.
    assert suite.customer_balance(customer) == 0
    assert suite.balance(returns_receivable_account_id("EUR")).posted == 10_000 - left
    # The bank took back the whole collection, and the ledger's clearing says so.
    assert suite.clearing().posted == 10_000 - 7_000 - 10_000
    reversal = suite.ledger.GetTransfer(
        lpb.GetTransferRequest(transfer_id=transfer_id(collected.id, LedgerStep.REVERSE))
    ).transfer
    assert sorted((leg.account_id, leg.direction, leg.amount) for leg in reversal.legs) == sorted(
        [
            (clearing_account_id("EUR"), lpb.DIRECTION_CREDIT, 10_000),
            (customer_account_id(customer, "EUR"), lpb.DIRECTION_DEBIT, left),
            (returns_receivable_account_id("EUR"), lpb.DIRECTION_DEBIT, 10_000 - left),
        ]
    )
    run = suite.reconcile()
    assert list(run.breaks) == []
    # The collection, the payout, and the collection's return.
    assert run.matched_count == run.statement_line_count == 3


def test_idempotent_creation(suite: Suite) -> None:
    customer = suite.customer()
    payment_id = suite.new_id("pay")
    first = suite.collection(customer, 700, payment_id=payment_id)
    replay = suite.collection(customer, 700, payment_id=payment_id)
    assert replay.id == first.id
    assert replay.create_time == first.create_time
    reused = rpc_error(lambda: suite.collection(customer, 701, payment_id=payment_id))
    assert reused.code() == grpc.StatusCode.ALREADY_EXISTS
    assert reason_of(reused) == "IDEMPOTENCY_KEY_REUSED"
    suite.wait_for(payment_id)
    assert [p["reference"] for p in suite.bank.payments()].count(payment_id) == 1


def test_reconciliation_agrees_after_a_mixed_day(suite: Suite) -> None:
    customer = suite.customer()
    suite.fund(customer, 20_000)
    settled = suite.payout(customer, 1_000)
    returned = suite.payout(customer, 2_000, account="DE00000000000000009904")
    suite.wait_for(settled.id)
    suite.wait_for(returned.id, {S.PAYMENT_STATE_RETURNED})
    run = suite.reconcile()
    assert list(run.breaks) == []
    # Collection, payout, and the returned payout's settlement and return.
    assert run.statement_line_count == 4
    assert run.matched_count == 4
    replay = suite.payments.RunReconciliation(
        pb.RunReconciliationRequest(run_id=run.id, statement_date=run.statement_date)
    ).run
    assert replay == run


def test_the_daily_job_reconciles_yesterday_once(suite: Suite) -> None:
    first = suite.reconcile_yesterday()
    again = suite.reconcile_yesterday()
    assert first == again
    run = suite.payments.GetReconciliationRun(pb.GetReconciliationRunRequest(run_id=first)).run
    assert list(run.breaks) == []
    with suite.app.engine.connect() as connection:
        completed = connection.execute(
            select(tables.outbox.c.payload).where(
                tables.outbox.c.event_type == ev.ReconciliationCompleted.DESCRIPTOR.full_name
            )
        ).scalars()
        runs = [ev.ReconciliationCompleted.FromString(p).run.id for p in completed]
    assert runs == [first]
