"""Payments' use cases on the in-memory adapters: no database, no network, no sleeping.

The same use cases the service runs, on ``payments.adapters.memory``: a unit of
work over an in-memory database, a ledger that replays by transfer id, a bank
that replays by idempotency key, identity, and a clock that moves when told.
The database tier (tests/integration/test_payments_*.py) runs the same flows on
PostgreSQL and the real services.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import payments.domain.creation
import payments.service_layer.creation
import pytest
from chassis.kernel.errors import (
    DomainError,
    FailedPrecondition,
    IdempotencyKeyReused,
    NotFound,
    PermissionDenied,
    RetryTransaction,
    Unavailable,
)
from payments.adapters.memory import MemoryPayments, MemoryUnitOfWork
from payments.domain.bank import BankInstruction, LookupResult, SubmitResult
from payments.domain.customers import CustomerKyc
from payments.domain.events import (
    CustomerDataErased,
    PaymentStateChanged,
    ReconciliationCompleted,
)
from payments.domain.fees import FeeSchedule
from payments.domain.fraud import FraudRules
from payments.domain.ledger_plan import (
    AccountSpec,
    LedgerLeg,
    LedgerOperation,
    OpKind,
    clearing_account_id,
    customer_account_id,
)
from payments.domain.model import BankAccount, LedgerStep, Payment, PaymentRequest, transfer_id
from payments.domain.policy import Policy
from payments.domain.reconciliation import BreakKind
from payments.domain.states import PaymentKind, PaymentState
from payments.service_layer import rounds, use_cases
from payments.service_layer.creation import Creation, create_payment, create_payments
from payments.service_layer.ports import LedgerRequestRefused, StaleWrite
from payments.service_layer.use_cases import Caller, Deps, record_customer_kyc
from structlog.testing import capture_logs

S = PaymentState
FEE = 100
DESTINATION = BankAccount("DE89370400440532013000", "Bob")
SOURCE = BankAccount("FR7630006000011234567890189", "Carol")
CREATOR = Caller(client_id="cli_maker", request_id="req-make")
REVIEWER = Caller(client_id="cli_checker", request_id="req-check")


@dataclass
class Service:
    """Payments' use cases and rounds wired to the fakes."""

    fakes: MemoryPayments
    deps: Deps

    @property
    def now(self) -> datetime:
        return self.fakes.clock.now()

    def verified(self, customer_id: str, funds: int = 0) -> str:
        """A customer identity knows as VERIFIED (payments' projection does not yet)."""
        self.fakes.identity.add(customer_id, since=self.now - timedelta(days=400))
        if funds:
            self.fakes.ledger.deposit(customer_id, "EUR", funds, f"tr_fund_{customer_id}")
        return customer_id

    def request(
        self,
        payment_id: str,
        customer_id: str,
        amount: int,
        kind: PaymentKind = PaymentKind.PAYOUT,
        caller: Caller = CREATOR,
    ) -> PaymentRequest:
        return PaymentRequest(
            payment_id=payment_id,
            kind=kind,
            customer_id=customer_id,
            amount=amount,
            currency="EUR",
            counterparty=DESTINATION if kind is PaymentKind.PAYOUT else SOURCE,
            requested_by=caller.requester,
        )

    def payout(self, payment_id: str, customer_id: str, amount: int) -> Payment:
        request = self.request(payment_id, customer_id, amount)
        return create_payment(self.deps, request, "destination", CREATOR)

    def collection(self, payment_id: str, customer_id: str, amount: int) -> Payment:
        request = self.request(payment_id, customer_id, amount, PaymentKind.COLLECTION)
        return create_payment(self.deps, request, "source", CREATOR)

    def group(self, *requests: PaymentRequest) -> list[Payment | BaseException]:
        return create_payments(self.deps, [Creation(r, "destination") for r in requests])

    def get(self, payment_id: str) -> Payment:
        return use_cases.get_payment(self.deps, payment_id)

    def available(self, customer_id: str) -> int:
        return self.fakes.ledger.available(customer_account_id(customer_id, "EUR"))

    def held(self, customer_id: str) -> int:
        account = self.fakes.ledger.accounts[customer_account_id(customer_id, "EUR")]
        return account.debits_pending

    def refuse_writes(self, operation: str, payment_id: str) -> None:
        """The database refuses every ``operation`` ("add", "save") that writes ``payment_id``."""

        def refuse(attempted: str, ids: Sequence[str]) -> None:
            if attempted == operation and payment_id in ids:
                raise RuntimeError(f"injected: the database refuses to {operation} {payment_id}")

        self.fakes.database.before_write = refuse

    def drive(self, done: Callable[[], bool], what: str, rounds: int = 40) -> None:
        """Worker rounds and the bank's feed, a minute apart, until ``done``."""
        for _ in range(rounds):
            if done():
                return
            self.process_due()
            self.follow_bank_feed()
            self.fakes.clock.advance(61)
        assert done(), what

    def process_due(self) -> int:
        """A worker's round over due payments (its bank calls one after another)."""
        return rounds.process_due(self.deps)

    def follow_bank_feed(self) -> int:
        return rounds.follow_bank_feed(self.deps)

    def settle(self, *payment_ids: str) -> list[Payment]:
        """Through the bank: submitted by a worker, settled by the bank, booked."""
        for payment_id in payment_ids:
            self.drive(lambda: self.get(payment_id).state is S.SUBMITTED, f"{payment_id} sent")  # noqa: B023
            self.fakes.bank.settle(payment_id)
        self.drive(
            lambda: (
                all(self.get(p).pending_ledger_step() is None for p in payment_ids)
                and all(self.get(p).state is S.SETTLED for p in payment_ids)
            ),
            "settled and booked",
        )
        return [self.get(p) for p in payment_ids]

    def states(self, payment_id: str) -> list[PaymentState]:
        """The states the outbox carried for the payment, in commit order."""
        return [
            e.state
            for e in self.fakes.database.outbox
            if isinstance(e, PaymentStateChanged) and e.payment.id == payment_id
        ]


def make_service(policy: Policy | None = None) -> Service:
    fakes = MemoryPayments()
    return Service(
        fakes, fakes.deps(policy or Policy(fees=FeeSchedule(fixed={"EUR": FEE}), stuck_after=3))
    )


@pytest.fixture
def service() -> Service:
    return make_service()


def error_of(outcome: Payment | BaseException) -> DomainError:
    assert isinstance(outcome, DomainError), outcome
    return outcome


def payment_of(outcome: Payment | BaseException) -> Payment:
    assert isinstance(outcome, Payment), outcome
    return outcome


# --- creating payouts and collections: a single creation is a group of one --------------------


def test_a_payout_asks_identity_once_holds_its_funds_and_replays(service: Service) -> None:
    customer = service.verified("cus_ada", funds=10_000)
    payout = service.payout("pay_1", customer, 1_000)
    assert payout.state is S.FUNDS_HELD
    assert service.fakes.identity.asked == [customer]
    assert service.available(customer) == 10_000 - 1_000 - FEE
    assert service.states("pay_1") == [S.CREATED, S.FUNDS_HELD]
    # The projection now knows the customer (stamped by the service's clock).
    assert service.fakes.database.customers_updated_at[customer] == service.now
    again = service.payout("pay_1", customer, 1_000)
    assert (again.id, again.state, again.created_at) == (payout.id, S.FUNDS_HELD, payout.created_at)
    assert service.fakes.identity.asked == [customer]
    assert service.held(customer) == 1_000 + FEE
    with pytest.raises(IdempotencyKeyReused):
        service.payout("pay_1", customer, 999)


def test_one_group_decides_known_and_unknown_customers_and_holds_them_in_one_request(
    service: Service,
) -> None:
    known = service.verified("cus_known", funds=10_000)
    service.payout("pay_warmup", known, 100)  # the projection now knows this customer
    fresh = service.verified("cus_fresh", funds=10_000)
    unverified = "cus_unverified"
    service.fakes.identity.add(unverified, "PENDING_REVIEW")
    service.fakes.identity.asked.clear()
    requests = len(service.fakes.ledger.requests)
    outcomes = service.group(
        service.request("pay_a", known, 1_000),
        service.request("pay_b", fresh, 2_000),
        service.request("pay_c", fresh, 3_000),
        service.request("pay_d", "cus_nobody", 500),
        service.request("pay_e", unverified, 500),
    )
    a, b, c = (payment_of(o) for o in outcomes[:3])
    assert [a.state, b.state, c.state] == [S.FUNDS_HELD] * 3
    assert error_of(outcomes[3]).reason == "CUSTOMER_NOT_FOUND"
    assert error_of(outcomes[4]).reason == "CUSTOMER_NOT_VERIFIED"
    # Identity was asked once per customer the projection could not decide for.
    assert sorted(service.fakes.identity.asked) == ["cus_fresh", "cus_nobody", unverified]
    # All three holds went to the ledger in one request.
    holds = [transfer_id(p, LedgerStep.HOLD) for p in ("pay_a", "pay_b", "pay_c")]
    assert [sorted(r) for r in service.fakes.ledger.requests[requests:]] == [sorted(holds)]
    assert service.held(fresh) == 5_000 + 2 * FEE
    # A declined payment is stored, and asking again is refused again.
    assert service.get("pay_e").state is S.DECLINED
    (again,) = service.group(service.request("pay_e", unverified, 500))
    assert error_of(again).reason == "CUSTOMER_NOT_VERIFIED"


def test_velocity_counts_the_earlier_payments_of_the_same_group() -> None:
    ruled = make_service(
        Policy(fraud=FraudRules(velocity_max_count=2), fees=FeeSchedule(fixed={"EUR": FEE}))
    )
    customer = ruled.verified("cus_busy", funds=10_000)
    ruled.payout("pay_0", customer, 100)
    outcomes = ruled.group(
        ruled.request("pay_1", customer, 100), ruled.request("pay_2", customer, 100)
    )
    assert payment_of(outcomes[0]).state is S.FUNDS_HELD
    assert error_of(outcomes[1]).reason == "VELOCITY_COUNT_EXCEEDED"


def test_identity_down_declines_on_a_known_status_and_is_unavailable_on_none(
    service: Service,
) -> None:
    service.fakes.identity.add("cus_pending", "PENDING_REVIEW")
    with pytest.raises(FailedPrecondition):
        service.payout("pay_1", "cus_pending", 100)  # stored in the projection as not verified
    service.fakes.identity.down = True
    with pytest.raises(FailedPrecondition) as declined:
        service.payout("pay_2", "cus_pending", 100)
    assert declined.value.reason == "CUSTOMER_NOT_VERIFIED"
    with pytest.raises(Unavailable) as unknown:
        service.payout("pay_3", "cus_never_seen", 100)
    assert unknown.value.reason == "IDENTITY_UNAVAILABLE"
    assert service.fakes.database.payments.keys() == {"pay_1", "pay_2"}


def test_a_decision_that_raises_fails_only_its_own_request(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = service.verified("cus_ada", funds=10_000)
    real = payments.domain.creation.decide_payment

    def decide(request: PaymentRequest, *args: object, **kwargs: object) -> Payment:
        if request.payment_id == "pay_bad":
            raise RuntimeError("injected: this request cannot be decided")
        return real(request, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(payments.service_layer.creation, "decide_payment", decide)
    outcomes = service.group(
        service.request("pay_good", customer, 1_000),
        service.request("pay_bad", customer, 1_000),
        service.request("pay_fine", customer, 1_000),
    )
    assert isinstance(outcomes[1], RuntimeError)
    assert [payment_of(outcomes[i]).state for i in (0, 2)] == [S.FUNDS_HELD, S.FUNDS_HELD]
    assert "pay_bad" not in service.fakes.database.payments
    assert service.held(customer) == 2 * (1_000 + FEE)


def test_a_failed_group_transaction_writes_nothing_and_the_group_replays_once_split(
    service: Service,
) -> None:
    customer = service.verified("cus_ada", funds=10_000)
    service.payout("pay_warmup", customer, 100)
    service.refuse_writes("add", "pay_bad")
    commits, events = service.fakes.database.commits, len(service.fakes.database.outbox)
    good = service.request("pay_good", customer, 1_000)
    bad = service.request("pay_bad", customer, 1_000)
    with pytest.raises(RuntimeError):
        service.group(good, bad)
    assert "pay_good" not in service.fakes.database.payments
    assert (service.fakes.database.commits, len(service.fakes.database.outbox)) == (commits, events)
    # What the group committer does next: each half again; the good one alone goes through.
    assert payment_of(service.group(good)[0]).state is S.FUNDS_HELD
    with pytest.raises(RuntimeError):
        service.group(bad)


def test_a_failure_after_identity_was_asked_stays_its_own_request(service: Service) -> None:
    known = service.verified("cus_known", funds=10_000)
    service.payout("pay_warmup", known, 100)
    fresh = service.verified("cus_fresh", funds=10_000)
    other = service.verified("cus_other", funds=10_000)
    service.refuse_writes("add", "pay_bad")
    outcomes = service.group(
        service.request("pay_first", known, 1_000),
        service.request("pay_bad", fresh, 1_000),
        service.request("pay_later", other, 1_000),
    )
    # The first decisions were committed: their caller never gets an error now.
    assert payment_of(outcomes[0]).state is S.FUNDS_HELD
    assert isinstance(outcomes[1], RuntimeError)
    assert payment_of(outcomes[2]).state is S.FUNDS_HELD
    assert "pay_bad" not in service.fakes.database.payments


def test_a_hold_whose_answer_was_lost_is_held_once_when_the_group_runs_again(
    service: Service,
) -> None:
    customer = service.verified("cus_ada", funds=10_000)
    service.fakes.ledger.lose_answers = True
    requests = [service.request(f"pay_{i}", customer, 1_000) for i in range(3)]
    first = [payment_of(o) for o in service.group(*requests)]
    # Committed, the holds' outcome unknown: the callers get their payments as committed.
    assert {p.state for p in first} == {S.CREATED}
    assert all(service.get(p.id).hold_uncertain for p in first)
    assert service.held(customer) == 3 * (1_000 + FEE)
    service.fakes.ledger.lose_answers = False
    again = [payment_of(o) for o in service.group(*requests)]
    assert {p.state for p in again} == {S.FUNDS_HELD}
    # The ledger replayed each hold by its transfer id: nothing held twice.
    assert service.held(customer) == 3 * (1_000 + FEE)


def test_holds_whose_outcome_cannot_be_recorded_together_are_recorded_alone(
    service: Service,
) -> None:
    customer = service.verified("cus_ada", funds=10_000)
    service.payout("pay_warmup", customer, 100)
    service.refuse_writes("save", "pay_bad")
    outcomes = service.group(
        service.request("pay_good", customer, 1_000),
        service.request("pay_bad", customer, 1_000),
    )
    assert payment_of(outcomes[0]).state is S.FUNDS_HELD
    # Held in the ledger, its outcome not written: the committed payment, no error.
    assert payment_of(outcomes[1]).state is S.CREATED
    service.refuse_writes("", "")
    service.fakes.clock.advance(31)  # the lease ends: a worker holds it (the ledger replays)
    service.process_due()
    assert service.get("pay_bad").state is S.FUNDS_HELD
    assert service.held(customer) == (100 + FEE) + 2 * (1_000 + FEE)


def test_a_payout_the_ledger_cannot_cover_is_declined_and_nothing_stays_held(
    service: Service,
) -> None:
    customer = service.verified("cus_poor", funds=500)
    with pytest.raises(FailedPrecondition) as refused:
        service.payout("pay_1", customer, 1_000)
    assert refused.value.reason == "INSUFFICIENT_FUNDS"
    assert service.get("pay_1").state is S.DECLINED
    assert (service.available(customer), service.held(customer)) == (500, 0)


# --- the workers ------------------------------------------------------------------------------


def test_a_payout_goes_to_the_bank_settles_and_posts_its_hold(service: Service) -> None:
    customer = service.verified("cus_ada", funds=10_000)
    service.payout("pay_1", customer, 1_000)
    assert service.process_due() == 1
    sent = service.get("pay_1")
    assert (sent.state, sent.bank_attempts) == (S.SUBMITTED, 1)
    service.fakes.bank.settle("pay_1")
    assert service.follow_bank_feed() == 2  # its acceptance, then its settlement
    settled = service.get("pay_1")
    assert (settled.state, settled.pending_ledger_step()) == (S.SETTLED, None)
    assert (service.available(customer), service.held(customer)) == (10_000 - 1_000 - FEE, 0)
    assert service.fakes.ledger.clearing_bookings([transfer_id("pay_1", LedgerStep.POST)]) == {
        transfer_id("pay_1", LedgerStep.POST): -1_000
    }
    assert service.states("pay_1") == [
        S.CREATED,
        S.FUNDS_HELD,
        S.SUBMITTING,
        S.SUBMITTED,
        S.SETTLED,
    ]


def test_a_collection_is_credited_when_settled_and_taken_back_when_returned(
    service: Service,
) -> None:
    customer = service.verified("cus_ada")
    service.collection("pay_in", customer, 700)
    service.settle("pay_in")
    assert service.available(customer) == 700
    service.fakes.bank.return_payment("pay_in")
    service.drive(
        lambda: (
            service.get("pay_in").state is S.RETURNED
            and service.get("pay_in").pending_ledger_step() is None
        ),
        "returned and reversed",
    )
    assert service.available(customer) == 0


def test_a_submission_without_an_answer_is_asked_about_never_sent_twice(
    service: Service,
) -> None:
    customer = service.verified("cus_ada", funds=10_000)
    service.payout("pay_lost", customer, 1_000)
    service.fakes.bank.lose_answers = True
    service.process_due()
    assert service.get("pay_lost").state is S.SUBMITTING
    service.fakes.bank.lose_answers = False
    service.drive(lambda: service.get("pay_lost").state is S.SUBMITTED, "resolved")
    assert service.fakes.bank.submissions == ["pay_lost"]
    # Never reached the bank: asked about, then sent again under the same key.
    service.payout("pay_unsent", customer, 1_000)
    service.fakes.bank.down = True
    service.process_due()
    service.fakes.bank.down = False
    service.drive(lambda: service.get("pay_unsent").state is S.SUBMITTED, "sent again")
    assert service.fakes.bank.submissions.count("pay_unsent") == 1
    assert service.get("pay_unsent").bank_attempts == 2


def test_a_bank_refusal_fails_the_payout_and_releases_its_hold(service: Service) -> None:
    customer = service.verified("cus_ada", funds=10_000)
    service.fakes.bank.closed_accounts.add(DESTINATION.account_number)
    service.payout("pay_1", customer, 1_000)
    service.drive(
        lambda: (
            service.get("pay_1").pending_ledger_step() is None
            and service.get("pay_1").state is S.FAILED
        ),
        "failed and voided",
    )
    assert service.get("pay_1").reason == "BANK_ACCOUNT_CLOSED"
    assert (service.available(customer), service.held(customer)) == (10_000, 0)


def test_a_hold_that_keeps_failing_is_reported_once_as_stuck(service: Service) -> None:
    customer = service.verified("cus_ada", funds=10_000)
    service.fakes.ledger.down = True
    assert service.payout("pay_1", customer, 1_000).state is S.CREATED
    with capture_logs() as logs:
        service.drive(lambda: service.get("pay_1").retries >= 5, "retried", rounds=200)
    stuck = [e["payment_id"] for e in logs if e["event"] == "payment cannot progress"]
    assert stuck == ["pay_1"]
    with service.fakes.uow() as uow:
        assert uow.payments.count_stuck(service.deps.policy.stuck_after) == 1
    service.fakes.ledger.down = False
    service.drive(lambda: service.get("pay_1").state is S.FUNDS_HELD, "held", rounds=200)


def test_one_failing_bank_call_leaves_the_rest_of_the_round_going(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = service.verified("cus_ada", funds=10_000)
    for payment_id in ("pay_unlucky", "pay_lucky"):
        service.payout(payment_id, customer, 1_000)
    real = service.fakes.bank.submit

    def submit(instruction: BankInstruction) -> object:
        if instruction.idempotency_key == "pay_unlucky":
            raise RuntimeError("injected: the bank client broke on this payment")
        return real(instruction)

    monkeypatch.setattr(service.fakes.bank, "submit", submit)
    assert service.process_due() == 2
    assert service.get("pay_lucky").state is S.SUBMITTED
    assert service.get("pay_unlucky").state is S.SUBMITTING
    monkeypatch.undo()
    service.drive(lambda: service.get("pay_unlucky").state is S.SUBMITTED, "retried")
    assert service.fakes.bank.submissions.count("pay_unlucky") == 1


# --- refunds, cancels and reviews -----------------------------------------------------------


def test_refunds_of_a_settled_collection_never_exceed_it_and_replay(service: Service) -> None:
    customer = service.verified("cus_ada")
    service.collection("pay_in", customer, 1_000)
    service.settle("pay_in")
    refund = use_cases.refund_payment(service.deps, "pay_ref1", "pay_in", 600, "damaged")
    assert (refund.state, refund.kind) == (S.FUNDS_HELD, PaymentKind.REFUND)
    assert service.available(customer) == 400
    again = use_cases.refund_payment(service.deps, "pay_ref1", "pay_in", 600, "damaged")
    assert again.id == refund.id
    with pytest.raises(FailedPrecondition) as over:
        use_cases.refund_payment(service.deps, "pay_ref2", "pay_in", 500, "again")
    assert over.value.reason == "REFUND_EXCEEDS_PAYMENT"
    with pytest.raises(PermissionDenied):
        use_cases.refund_payment(
            service.deps, "pay_ref3", "pay_in", 1, "x", Caller(customer_id="cus_mallory")
        )
    assert service.get("pay_in").refunded_amount == 600


def test_a_canceled_payout_releases_its_hold_and_only_its_owner_may_cancel(
    service: Service,
) -> None:
    customer = service.verified("cus_ada", funds=10_000)
    service.payout("pay_1", customer, 1_000)
    with pytest.raises(PermissionDenied) as foreign:
        use_cases.cancel_payment(service.deps, "pay_1", caller=Caller(customer_id="cus_mallory"))
    assert foreign.value.reason == "NOT_PAYMENT_OWNER"
    canceled = use_cases.cancel_payment(service.deps, "pay_1", "changed my mind")
    assert canceled.state is S.CANCELED
    assert use_cases.cancel_payment(service.deps, "pay_1").state is S.CANCELED
    service.drive(lambda: service.get("pay_1").pending_ledger_step() is None, "voided")
    assert (service.available(customer), service.held(customer)) == (10_000, 0)


def test_a_held_payout_is_reviewed_by_another_client_than_its_creator() -> None:
    reviewed = make_service(
        Policy(fraud=FraudRules(review_amount={"EUR": 5_000}), fees=FeeSchedule(fixed={"EUR": FEE}))
    )
    customer = reviewed.verified("cus_ada", funds=100_000)
    big = reviewed.payout("pay_big", customer, 6_000)
    assert (big.state, big.review_reason) == (S.IN_REVIEW, "LARGE_AMOUNT")
    with pytest.raises(PermissionDenied) as same:
        use_cases.approve_payment(reviewed.deps, "pay_big", caller=CREATOR)
    assert same.value.reason == "REVIEWER_IS_REQUESTER"
    assert reviewed.get("pay_big").reviewed_by is None  # the refusal wrote nothing
    with pytest.raises(PermissionDenied) as customer_token:
        use_cases.approve_payment(reviewed.deps, "pay_big", caller=Caller(customer_id=customer))
    assert customer_token.value.reason == "SERVICE_CALLER_REQUIRED"
    approved = use_cases.approve_payment(reviewed.deps, "pay_big", "looks fine", REVIEWER)
    assert (approved.state, approved.created_by, approved.reviewed_by) == (
        S.FUNDS_HELD,
        CREATOR.requester,
        REVIEWER.requester,
    )
    assert reviewed.get("pay_big").review_note == "looks fine"
    other = reviewed.payout("pay_other", customer, 7_000)
    rejected = use_cases.reject_payment(reviewed.deps, other.id, "no", REVIEWER)
    assert (rejected.state, rejected.reason) == (S.DECLINED, "REJECTED_IN_REVIEW")
    assert (rejected.reviewed_by, rejected.review_note) == (REVIEWER.requester, "no")
    reviewed.drive(lambda: reviewed.get(other.id).pending_ledger_step() is None, "voided")
    assert reviewed.held(customer) == 6_000 + FEE


# --- the KYC projection ---------------------------------------------------------------------


def test_the_projection_keeps_the_newest_kyc_version_on_the_injected_clock(
    service: Service,
) -> None:
    since = service.now - timedelta(days=10)

    def record(kyc: CustomerKyc) -> bool:
        return record_customer_kyc(service.fakes.uow, service.fakes.clock, kyc)

    assert record(CustomerKyc("cus_ada", "PENDING_REVIEW", 1, since))
    service.fakes.clock.advance(60)
    stamped = service.now
    assert record(CustomerKyc("cus_ada", "VERIFIED", 3, None))
    assert not record(CustomerKyc("cus_ada", "REJECTED", 2, None))
    assert not record(CustomerKyc("cus_ada", "REJECTED", 3, None))
    with service.fakes.uow() as uow:
        known = uow.payments.customer("cus_ada")
    assert known == CustomerKyc("cus_ada", "VERIFIED", 3, since)
    assert service.fakes.database.customers_updated_at["cus_ada"] == stamped
    # The projection saying VERIFIED is enough: identity (which knows nothing) is not asked.
    service.fakes.ledger.deposit("cus_ada", "EUR", 5_000, "tr_fund")
    assert service.payout("pay_1", "cus_ada", 1_000).state is S.FUNDS_HELD
    assert service.fakes.identity.asked == []


# --- reconciliation -------------------------------------------------------------------------


def test_reconciliation_matches_the_day_and_replays_its_run(service: Service) -> None:
    customer = service.verified("cus_ada", funds=10_000)
    service.payout("pay_1", customer, 1_000)
    service.collection("pay_2", customer, 500)
    service.settle("pay_1", "pay_2")
    service.payout("pay_3", customer, 200)
    service.drive(lambda: service.get("pay_3").state is S.SUBMITTED, "sent")
    service.fakes.bank.settle("pay_3")  # the feed is not followed: our side still says SUBMITTED
    day = service.now.date().isoformat()
    report = use_cases.run_reconciliation(service.deps, "rec_1", day)
    assert (report.line_count, report.matched) == (3, 2)
    assert [(b.kind, b.payment_id) for b in report.breaks] == [(BreakKind.STATUS_MISMATCH, "pay_3")]
    assert use_cases.run_reconciliation(service.deps, "rec_1", day) == report
    assert use_cases.get_reconciliation_run(service.deps, "rec_1") == report
    completed = [e for e in service.fakes.database.outbox if isinstance(e, ReconciliationCompleted)]
    assert [e.report.run_id for e in completed] == ["rec_1"]
    yesterday = (service.now - timedelta(days=1)).date().isoformat()
    with pytest.raises(IdempotencyKeyReused):
        use_cases.run_reconciliation(service.deps, "rec_1", yesterday)
    with pytest.raises(NotFound):
        use_cases.get_reconciliation_run(service.deps, "rec_none")


# --- the fakes keep their ports' promises ---------------------------------------------------


def test_a_unit_of_work_left_without_commit_leaves_nothing_and_a_stale_save_is_refused(
    service: Service,
) -> None:
    customer = service.verified("cus_ada", funds=10_000)
    service.payout("pay_1", customer, 1_000)
    before = dict(service.fakes.database.payments)

    def crash() -> None:
        with service.fakes.uow() as uow:
            payment = uow.payments.get("pay_1")
            assert payment is not None
            payment.cancel(service.now)
            uow.payments.save(payment)
            uow.payments.set_cursor("feed", 7)
            raise RuntimeError("crash before the commit")

    with pytest.raises(RuntimeError):
        crash()
    assert service.fakes.database.payments == before
    assert service.fakes.database.cursors == {}
    with service.fakes.uow() as first:
        stale = first.payments.get("pay_1")
    with service.fakes.uow() as second:
        fresh = second.payments.get("pay_1")
        assert fresh is not None
        fresh.retries = 1
        second.payments.save(fresh)
        second.commit()
    assert stale is not None
    with pytest.raises(StaleWrite), service.fakes.uow() as third:
        third.payments.save(stale)
    with pytest.raises(RetryTransaction), service.fakes.uow() as fourth:
        fourth.payments.add(dataclasses.replace(stale))


def test_the_fake_ledger_replays_by_transfer_id_and_refuses_a_malformed_request_whole(
    service: Service,
) -> None:
    ledger = service.fakes.ledger
    ledger.deposit("cus_ada", "EUR", 100, "tr_fund")
    account = customer_account_id("cus_ada", "EUR")
    clearing = clearing_account_id("EUR")

    def pay(name: str, amount: int, to: str = clearing) -> LedgerOperation:
        legs = (LedgerLeg(account, True, amount, "EUR"), LedgerLeg(to, False, amount, "EUR"))
        return LedgerOperation(name, LedgerStep.HOLD, f"tr_{name}", OpKind.PENDING, legs)

    first = ledger.apply([pay("a", 60)])
    assert first == ledger.apply([pay("a", 60)])
    refused = ledger.apply([pay("b", 60)])
    assert (refused[0].ok, refused[0].reason) == (False, "INSUFFICIENT_FUNDS")
    ledger.deposit("cus_ada", "EUR", 100, "tr_more")
    assert ledger.apply([pay("b", 60)]) == refused  # a refusal replays too
    assert ledger.apply([pay("a", 61)])[0].reason == "IDEMPOTENCY_KEY_REUSED"
    with pytest.raises(LedgerRequestRefused):
        ledger.apply([pay("c", 1), pay("d", 1, to="acct_" + "x" * 61)])
    assert ledger.available(account) == 200 - 60
    ledger.ensure_accounts([AccountSpec("acct_other_EUR", "EUR", debit_normal=True)])
    assert set(ledger.running_totals([account, "acct_other_EUR", "acct_none"])) == {
        account,
        "acct_other_EUR",
    }


def test_the_fake_bank_makes_one_payment_per_idempotency_key(service: Service) -> None:
    bank = service.fakes.bank
    instruction = BankInstruction("pay_1", True, 100, "EUR", DESTINATION, "pay_1")
    first = bank.submit(instruction)
    again = bank.submit(instruction)
    assert first.result is again.result is SubmitResult.ACCEPTED
    assert first.payment == again.payment
    other = bank.submit(dataclasses.replace(instruction, amount=101))
    assert (other.result, other.code) == (SubmitResult.REFUSED, "idempotency_key_reused")
    assert bank.lookup("pay_1").result is LookupResult.FOUND
    assert bank.lookup("pay_2").result is LookupResult.NOT_FOUND
    bank.settle("pay_1")
    events, after = bank.events(0, 10.0)
    assert [e.status.value for e in events] == ["pending", "settled"]
    assert bank.events(after, 10.0) == ([], after)
    (line,) = bank.statement(service.now.date())
    assert (line.reference, line.outgoing, line.amount) == ("pay_1", True, 100)


def test_a_memory_unit_of_work_serves_one_transaction_at_a_time(service: Service) -> None:
    database = service.fakes.database
    others: list[bool] = []

    def another_transaction() -> None:
        began = database.lock.acquire(blocking=False)
        others.append(began)
        if began:
            database.lock.release()

    def from_another_thread() -> None:
        thread = threading.Thread(target=another_transaction)
        thread.start()
        thread.join()

    with MemoryUnitOfWork(database):
        from_another_thread()
    from_another_thread()
    assert others == [False, True]


def test_erasing_a_customer_blanks_its_counterparties_once_and_keeps_the_money(
    service: Service,
) -> None:
    customer = service.verified("cus_erased", funds=10_000)
    payout = service.payout("pay_erased", customer, 1_000)
    erase = use_cases.erase_customer_data
    assert erase(service.deps.uow, service.fakes.clock, customer) == 1
    assert erase(service.deps.uow, service.fakes.clock, customer) == 0
    erased = service.get("pay_erased")
    assert erased.counterparty == BankAccount("", "")
    assert (erased.amount, erased.fee, erased.state) == (payout.amount, payout.fee, payout.state)
    assert service.available(customer) == 10_000 - 1_000 - FEE
    audits = [e for e in service.fakes.database.outbox if isinstance(e, CustomerDataErased)]
    assert [(a.customer_id, a.payment_count) for a in audits] == [(customer, 1)]
    # The same id asking again no longer matches what is stored (its account is gone).
    with pytest.raises(IdempotencyKeyReused):
        service.payout("pay_erased", customer, 1_000)
    # No new payment for an erased customer, whatever identity says of it later.
    with pytest.raises(FailedPrecondition) as declined:
        service.payout("pay_after_erasure", customer, 100)
    assert declined.value.reason == "CUSTOMER_NOT_VERIFIED"
    stored = use_cases.record_customer_kyc(
        service.deps.uow, service.fakes.clock, CustomerKyc(customer, "VERIFIED", 99, None)
    )
    assert stored is False
    with pytest.raises(FailedPrecondition):
        service.payout("pay_after_erasure_2", customer, 100)
