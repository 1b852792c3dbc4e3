"""The payments domain, no I/O: state machine, bank reports, ledger plan, fraud, fees, refunds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from chassis.kernel.errors import DomainError, FailedPrecondition, InvalidArgument
from payments.domain import fraud, validation
from payments.domain.fees import FeeSchedule
from payments.domain.ledger_plan import (
    OpKind,
    accounts_for,
    clearing_account_id,
    customer_account_id,
    fee_account_id,
    operation_for,
    returns_receivable_account_id,
)
from payments.domain.model import (
    Action,
    BankAccount,
    BankStatus,
    LedgerStep,
    Payment,
    PaymentRequest,
    bank_reason,
    transfer_id,
)
from payments.domain.reconciliation import (
    BreakKind,
    StatementLine,
    bookings_to_check,
    reconcile,
)
from payments.domain.refunds import check_refund
from payments.domain.states import TRANSITIONS, PaymentKind, PaymentState, is_allowed

S = PaymentState
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def make(kind: PaymentKind = PaymentKind.PAYOUT, amount: int = 1000, fee: int = 25) -> Payment:
    request = PaymentRequest(
        payment_id="pay_1",
        kind=kind,
        customer_id="cus_a",
        amount=amount,
        currency="EUR",
        counterparty=BankAccount("DE0012345678", "Ada"),
    )
    return Payment.create(
        request,
        fee=fee if kind is PaymentKind.PAYOUT else 0,
        ledger_account_id=customer_account_id("cus_a", "EUR"),
        now=NOW,
    )


def state_of(payment: Payment) -> PaymentState:
    return payment.state


# --- the state machine ----------------------------------------------------------------


def test_every_transition_lives_in_one_table_and_nothing_leaves_a_terminal_state() -> None:
    sources = {source for source, _ in TRANSITIONS}
    for terminal in (S.FAILED, S.CANCELED, S.DECLINED, S.RETURNED):
        assert terminal not in sources
    assert is_allowed(PaymentKind.PAYOUT, S.CREATED, S.FUNDS_HELD)
    assert not is_allowed(PaymentKind.COLLECTION, S.CREATED, S.FUNDS_HELD)
    assert is_allowed(PaymentKind.COLLECTION, S.CREATED, S.SUBMITTING)
    assert not is_allowed(PaymentKind.PAYOUT, S.CREATED, S.SUBMITTING)
    assert not is_allowed(PaymentKind.PAYOUT, S.SUBMITTED, S.CANCELED)


def test_payout_happy_path_records_every_transition_and_event() -> None:
    p = make()
    p.hold_placed(NOW)
    p.start_submission(NOW)
    assert p.bank_reported(BankStatus.PENDING, NOW, bank_payment_id="bpm_1")
    assert p.bank_reported(BankStatus.SETTLED, NOW + timedelta(seconds=1))
    assert [t.to_state for t in p.history] == [
        S.CREATED,
        S.FUNDS_HELD,
        S.SUBMITTING,
        S.SUBMITTED,
        S.SETTLED,
    ]
    assert [(e.previous_state, e.state) for e in p.events] == [
        (None, S.CREATED),
        (S.CREATED, S.FUNDS_HELD),
        (S.FUNDS_HELD, S.SUBMITTING),
        (S.SUBMITTING, S.SUBMITTED),
        (S.SUBMITTED, S.SETTLED),
    ]
    # Each event carries the payment as it was right after its change.
    assert [e.payment.state for e in p.events] == [e.state for e in p.events]
    assert p.bank_payment_id == "bpm_1"


def test_illegal_transitions_are_refused_with_failed_precondition() -> None:
    p = make()
    p.hold_placed(NOW)
    p.start_submission(NOW)
    with pytest.raises(FailedPrecondition) as refused:
        p.cancel(NOW)
    assert refused.value.reason == "ILLEGAL_TRANSITION"
    assert refused.value.metadata["state"] == "SUBMITTING"
    with pytest.raises(FailedPrecondition):
        p.transition(S.RETURNED, "x", NOW)


def test_cancel_is_idempotent_and_refused_while_the_hold_is_in_flight() -> None:
    p = make()
    p.leased_until = NOW + timedelta(seconds=30)
    with pytest.raises(DomainError) as busy:
        p.cancel(NOW)
    assert busy.value.reason == "PAYMENT_BUSY"
    p.leased_until = None
    p.cancel(NOW)
    p.cancel(NOW)
    assert p.state is S.CANCELED
    assert sum(1 for t in p.history if t.to_state is S.CANCELED) == 1


def test_bank_reports_in_any_order_walk_the_machine_once() -> None:
    p = make()
    p.hold_placed(NOW)
    p.start_submission(NOW)
    # The settlement arrives before the (lost) submit answer was ever seen.
    assert p.bank_reported(BankStatus.SETTLED, NOW, bank_payment_id="bpm_1")
    assert state_of(p) is S.SETTLED
    # A late acceptance and a repeated settlement change nothing.
    assert p.bank_reported(BankStatus.PENDING, NOW)
    assert p.bank_reported(BankStatus.SETTLED, NOW)
    assert p.bank_reported(BankStatus.RETURNED, NOW)
    assert p.state is S.RETURNED
    assert [t.to_state for t in p.history][-3:] == [S.SUBMITTED, S.SETTLED, S.RETURNED]


def test_a_report_about_a_payment_never_sent_is_a_contradiction() -> None:
    p = make()
    p.hold_placed(NOW)
    p.cancel(NOW)
    assert not p.bank_reported(BankStatus.SETTLED, NOW)
    assert p.state is S.CANCELED


def test_bank_failures_fail_the_payment() -> None:
    p = make(PaymentKind.COLLECTION)
    p.start_submission(NOW)
    p.bank_refused("account_closed", NOW)
    assert p.state is S.FAILED
    assert p.reason == "BANK_ACCOUNT_CLOSED"
    assert bank_reason("") == "BANK_FAILED"


def test_review_then_approve_or_reject() -> None:
    approved = make()
    approved.review_required, approved.review_reason = True, "LARGE_AMOUNT"
    approved.hold_placed(NOW)
    assert state_of(approved) is S.IN_REVIEW
    approved.approve(NOW)
    approved.approve(NOW)
    assert approved.state is S.FUNDS_HELD
    with pytest.raises(FailedPrecondition):
        approved.reject(NOW)
    rejected = make(PaymentKind.COLLECTION)
    rejected.review_required = True
    rejected.transition(S.IN_REVIEW, "LARGE_AMOUNT", NOW)
    rejected.reject(NOW)
    assert (rejected.state, rejected.reason) == (S.DECLINED, "REJECTED_IN_REVIEW")
    collection = make(PaymentKind.COLLECTION)
    collection.transition(S.IN_REVIEW, "LARGE_AMOUNT", NOW)
    collection.approve(NOW)
    assert collection.state is S.SUBMITTING


# --- ledger bookings ---------------------------------------------------------------------


def test_payout_ledger_steps_follow_the_state() -> None:
    p = make()
    assert p.next_action() is Action.PLACE_HOLD
    p.hold_placed(NOW)
    assert p.pending_ledger_step() is None
    assert p.next_action() is Action.SUBMIT
    p.start_submission(NOW)
    assert p.next_action() is Action.RESOLVE
    p.bank_reported(BankStatus.PENDING, NOW)
    assert p.next_action() is Action.POLL
    p.bank_reported(BankStatus.SETTLED, NOW)
    assert p.pending_ledger_step() is LedgerStep.POST
    assert p.next_action() is Action.LEDGER
    p.ledger_step_done(LedgerStep.POST)
    assert p.next_action() is Action.NONE
    p.bank_reported(BankStatus.RETURNED, NOW)
    assert p.pending_ledger_step() is LedgerStep.REVERSE


def test_unsuccessful_payouts_void_only_a_hold_that_may_exist() -> None:
    never_held = make()
    never_held.hold_refused("INSUFFICIENT_FUNDS", NOW)
    assert never_held.pending_ledger_step() is None
    maybe_held = make()
    maybe_held.hold_unanswered()
    maybe_held.cancel(NOW)
    assert maybe_held.pending_ledger_step() is LedgerStep.VOID
    held = make()
    held.hold_placed(NOW)
    held.cancel(NOW)
    assert held.pending_ledger_step() is LedgerStep.VOID
    held.ledger_step_done(LedgerStep.VOID)
    assert held.next_action() is Action.NONE


def test_hold_books_amount_and_fee_as_separate_legs_of_one_transfer() -> None:
    p = make(amount=1000, fee=25)
    hold = operation_for(p, LedgerStep.HOLD)
    assert hold.kind is OpKind.PENDING
    assert hold.transfer_id == "tr_pay_1_hold"
    legs = {(leg.account_id, leg.debit): leg.amount for leg in hold.legs}
    assert legs == {
        (customer_account_id("cus_a", "EUR"), True): 1025,
        (clearing_account_id("EUR"), False): 1000,
        (fee_account_id("EUR"), False): 25,
    }
    post = operation_for(p, LedgerStep.POST)
    assert (post.kind, post.target_transfer_id) == (OpKind.POST, "tr_pay_1_hold")
    reverse = operation_for(p, LedgerStep.REVERSE)
    assert (reverse.kind, reverse.target_transfer_id) == (OpKind.REVERSE, "tr_pay_1_post")
    # A returned payout only credits the customer: nothing can fall short.
    assert reverse.shortfall_account_id == ""


def test_collection_credits_the_customer_from_clearing() -> None:
    p = make(PaymentKind.COLLECTION, amount=500)
    credit = operation_for(p, LedgerStep.CREDIT)
    assert credit.kind is OpKind.MOVEMENT
    legs = {(leg.account_id, leg.debit): leg.amount for leg in credit.legs}
    assert legs == {(clearing_account_id("EUR"), True): 500, (p.ledger_account_id, False): 500}
    # A return takes back what the customer may have spent: the receivable takes the rest.
    reverse = operation_for(p, LedgerStep.REVERSE)
    assert (reverse.target_transfer_id, reverse.shortfall_account_id) == (
        "tr_pay_1_credit",
        returns_receivable_account_id("EUR"),
    )
    assert returns_receivable_account_id("EUR") in {a.id for a in accounts_for(p)}


def test_derived_ids_fit_the_ledger_for_the_longest_payment_id() -> None:
    longest = "pay_" + "x" * validation.MAX_PAYMENT_ID_BODY
    for step in LedgerStep:
        body = transfer_id(longest, step).removeprefix("tr_")
        assert len(body) <= 60
    account = customer_account_id("cus_" + "y" * 60, "EUR")
    assert len(account.removeprefix("acct_")) <= 60


# --- fraud, fees, refunds ------------------------------------------------------------------


RULES = fraud.FraudRules(
    max_amount={"EUR": 100_000},
    review_amount={"EUR": 50_000},
    velocity_window=timedelta(hours=1),
    velocity_max_count=3,
    velocity_max_amount={"EUR": 120_000},
    new_customer_age=timedelta(days=30),
    new_customer_max_amount={"EUR": 10_000},
)
OLD = NOW - timedelta(days=365)


DECLINE, REVIEW = fraud.Verdict.DECLINE, fraud.Verdict.REVIEW
YOUNG = NOW - timedelta(days=1)
V = fraud.Velocity


@pytest.mark.parametrize(
    ("amount", "since", "velocity", "expected"),
    [
        (1_000, OLD, V(), fraud.APPROVED),
        (100_001, OLD, V(), fraud.FraudDecision(DECLINE, "AMOUNT_OVER_LIMIT")),
        (10_001, YOUNG, V(), fraud.FraudDecision(DECLINE, "NEW_CUSTOMER_LIMIT_EXCEEDED")),
        (10_000, YOUNG, V(), fraud.APPROVED),
        (1_000, OLD, V(count=3), fraud.FraudDecision(DECLINE, "VELOCITY_COUNT_EXCEEDED")),
        (30_000, OLD, V(1, 100_000), fraud.FraudDecision(DECLINE, "VELOCITY_AMOUNT_EXCEEDED")),
        (50_000, OLD, V(), fraud.FraudDecision(REVIEW, "LARGE_AMOUNT")),
    ],
)
def test_fraud_rules(
    amount: int, since: datetime, velocity: fraud.Velocity, expected: fraud.FraudDecision
) -> None:
    decision = fraud.assess(
        RULES, amount=amount, currency="EUR", customer_since=since, now=NOW, velocity=velocity
    )
    assert decision == expected


def test_currencies_without_rules_are_unlimited() -> None:
    decision = fraud.assess(
        RULES, amount=10**12, currency="USD", customer_since=OLD, now=NOW, velocity=fraud.Velocity()
    )
    assert decision == fraud.APPROVED


def test_fees_are_integer_and_round_half_up() -> None:
    schedule = FeeSchedule(basis_points=100, fixed={"EUR": 25})
    assert schedule.fee_for(150, "EUR") == 27  # 25 + 1.5 rounded up
    assert schedule.fee_for(149, "EUR") == 26
    assert schedule.fee_for(10**15, "USD") == 10**13
    assert FeeSchedule().fee_for(1000, "EUR") == 0


def test_refunds_never_exceed_the_collection() -> None:
    collection = make(PaymentKind.COLLECTION, amount=1000)
    with pytest.raises(FailedPrecondition) as not_settled:
        check_refund(collection, 10, 0)
    assert not_settled.value.reason == "PAYMENT_NOT_REFUNDABLE"
    collection.start_submission(NOW)
    collection.bank_reported(BankStatus.SETTLED, NOW)
    check_refund(collection, 600, 0)
    check_refund(collection, 400, 600)
    with pytest.raises(FailedPrecondition) as too_much:
        check_refund(collection, 401, 600)
    assert too_much.value.reason == "REFUND_EXCEEDS_PAYMENT"
    assert too_much.value.metadata["refundable"] == "400"
    with pytest.raises(FailedPrecondition):
        check_refund(make(PaymentKind.PAYOUT), 1, 0)


def test_malformed_requests_name_every_bad_field() -> None:
    request = PaymentRequest(
        payment_id="order-1",
        kind=PaymentKind.PAYOUT,
        customer_id="",
        amount=0,
        currency="XXX",
        counterparty=BankAccount("not an account!"),
        description="x" * 200,
    )
    with pytest.raises(InvalidArgument) as refused:
        validation.validate_payment_request(request, "destination")
    fields = {v.field for v in refused.value.violations}
    assert fields == {
        "payment_id",
        "customer_id",
        "amount",
        "currency",
        "destination.account_number",
        "description",
    }


# --- reconciliation -----------------------------------------------------------------------


def settled_payment(pid: str, amount: int, kind: PaymentKind = PaymentKind.PAYOUT) -> Payment:
    p = make(kind, amount=amount)
    p.id = pid
    if p.outgoing:
        p.hold_placed(NOW)
    p.start_submission(NOW)
    p.bank_reported(BankStatus.SETTLED, NOW, bank_payment_id=f"bpm_{pid}", settled_at=NOW)
    return p


def line(pid: str, amount: int, *, outgoing: bool = True, bank_id: str = "") -> StatementLine:
    return StatementLine(1, bank_id or f"bpm_{pid}", pid, False, outgoing, amount, "EUR")


def test_reconciliation_matches_and_reports_each_kind_of_break() -> None:
    ok = settled_payment("pay_ok", 100)
    col = settled_payment("pay_col", 70, PaymentKind.COLLECTION)
    missing = settled_payment("pay_missing", 100)
    wrong_amount = settled_payment("pay_amount", 100)
    not_booked = settled_payment("pay_ledger", 100)
    failed = make()
    failed.id = "pay_failed"
    payments = {p.id: p for p in (ok, col, missing, wrong_amount, not_booked, failed)}
    lines = [
        line("pay_ok", 100),
        line("pay_col", 70, outgoing=False),
        line("pay_amount", 90),
        line("pay_ledger", 100),
        line("pay_failed", 100),
        line("pay_stranger", 5),
    ]
    bookings = {
        transfer_id("pay_ok", LedgerStep.POST): -100,
        transfer_id("pay_col", LedgerStep.CREDIT): 70,
        transfer_id("pay_amount", LedgerStep.POST): -100,
    }
    report = reconcile("rec_1", NOW.date(), lines, payments, bookings, NOW)
    kinds = {b.payment_id or b.bank_payment_id: b.kind for b in report.breaks}
    assert kinds == {
        "pay_missing": BreakKind.MISSING_AT_BANK,
        "pay_amount": BreakKind.AMOUNT_MISMATCH,
        "pay_ledger": BreakKind.LEDGER_MISMATCH,
        "pay_failed": BreakKind.STATUS_MISMATCH,
        "bpm_pay_stranger": BreakKind.UNKNOWN_AT_BANK,
    }
    assert (report.line_count, report.matched) == (6, 2)


def test_reconciliation_needs_only_the_bookings_its_lines_name() -> None:
    payout = settled_payment("pay_out", 100)
    collection = settled_payment("pay_col", 70, PaymentKind.COLLECTION)
    idle = settled_payment("pay_idle", 5)
    payments = {p.id: p for p in (payout, collection, idle)}
    returned = StatementLine(2, "bpm_pay_col", "pay_col", True, True, 70, "EUR")
    lines = [line("pay_out", 100), line("pay_col", 70, outgoing=False), returned, line("pay_x", 1)]
    assert bookings_to_check(lines, payments) == {
        transfer_id("pay_out", LedgerStep.POST),
        transfer_id("pay_col", LedgerStep.CREDIT),
        transfer_id("pay_col", LedgerStep.REVERSE),
    }


def test_a_second_bank_payment_for_one_of_ours_is_a_break() -> None:
    ok = settled_payment("pay_ok", 100)
    bookings = {transfer_id("pay_ok", LedgerStep.POST): -100}
    lines = [line("pay_ok", 100), line("pay_ok", 100, bank_id="bpm_duplicate")]
    report = reconcile("rec_1", NOW.date(), lines, {"pay_ok": ok}, bookings, NOW)
    assert [b.kind for b in report.breaks] == [BreakKind.UNKNOWN_AT_BANK]
    assert report.matched == 1


def test_every_break_names_its_payment_amounts_and_why() -> None:
    ok = settled_payment("pay_ok", 100)
    col = settled_payment("pay_col", 70, PaymentKind.COLLECTION)
    missing = settled_payment("pay_missing", 100)
    returned = settled_payment("pay_back", 40)
    returned.bank_reported(BankStatus.RETURNED, NOW, returned_at=NOW)
    wrong_amount = settled_payment("pay_amount", 100)
    wrong_booking = settled_payment("pay_ledger", 100)
    unbooked = settled_payment("pay_unbooked", 30)
    failed = make()
    failed.id = "pay_failed"
    payments = {
        p.id: p for p in (ok, col, missing, returned, wrong_amount, wrong_booking, unbooked, failed)
    }
    lines = [
        line("pay_ok", 100),
        line("pay_col", 70, outgoing=False),
        line("pay_amount", 90),
        line("pay_ledger", 100),
        line("pay_unbooked", 30),
        line("pay_failed", 100),
        line("pay_stranger", 5),
        line("pay_ok", 100, bank_id="bpm_dup"),
        line("pay_col", 70, outgoing=False),
    ]
    bookings = {
        transfer_id("pay_ok", LedgerStep.POST): -100,
        transfer_id("pay_col", LedgerStep.CREDIT): 70,
        transfer_id("pay_amount", LedgerStep.POST): -100,
        transfer_id("pay_ledger", LedgerStep.POST): -99,
    }
    report = reconcile("rec_1", NOW.date(), lines, payments, bookings, NOW)
    on = NOW.date().isoformat()
    assert (report.line_count, report.matched) == (9, 2)
    assert [
        (b.kind, b.payment_id, b.bank_payment_id, b.expected_amount, b.actual_amount, b.detail)
        for b in report.breaks
    ] == [
        (
            BreakKind.AMOUNT_MISMATCH,
            "pay_amount",
            "bpm_pay_amount",
            100,
            90,
            "the bank booked 90 EUR; the payment is 100 EUR",
        ),
        (
            BreakKind.LEDGER_MISMATCH,
            "pay_ledger",
            "bpm_pay_ledger",
            -100,
            -99,
            "the clearing account has -99 for tr_pay_ledger_post; the line needs -100",
        ),
        (
            BreakKind.LEDGER_MISMATCH,
            "pay_unbooked",
            "bpm_pay_unbooked",
            -30,
            0,
            "the clearing account has no booking for tr_pay_unbooked_post; the line needs -30",
        ),
        (
            BreakKind.STATUS_MISMATCH,
            "pay_failed",
            "bpm_pay_failed",
            1000,
            100,
            f"the bank settled it on {on}; the payment is CREATED",
        ),
        (
            BreakKind.UNKNOWN_AT_BANK,
            "",
            "bpm_pay_stranger",
            0,
            5,
            "statement line 1 (reference 'pay_stranger') matches no payment of ours",
        ),
        (
            BreakKind.UNKNOWN_AT_BANK,
            "pay_ok",
            "bpm_dup",
            0,
            100,
            "statement line 1 (reference 'pay_ok') matches no payment of ours",
        ),
        (
            BreakKind.STATUS_MISMATCH,
            "pay_col",
            "bpm_pay_col",
            70,
            70,
            f"the bank settled it on {on}; the payment is SETTLED",
        ),
        (
            BreakKind.MISSING_AT_BANK,
            "pay_back",
            "bpm_pay_back",
            40,
            0,
            f"the payment was settled on {on} but the statement has no line for it",
        ),
        (
            BreakKind.MISSING_AT_BANK,
            "pay_back",
            "bpm_pay_back",
            40,
            0,
            f"the payment was returned on {on} but the statement has no line for it",
        ),
        (
            BreakKind.MISSING_AT_BANK,
            "pay_missing",
            "bpm_pay_missing",
            100,
            0,
            f"the payment was settled on {on} but the statement has no line for it",
        ),
    ]
    assert {b.currency for b in report.breaks} == {"EUR"}
