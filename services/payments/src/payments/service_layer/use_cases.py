"""Payments' use cases: one function per command or query.

A payment and each of its transitions are written in one transaction with
their outbox events; calls to the ledger, identity and the bank happen outside
any transaction. Creating a payout is: record it (leased, so no one else acts
on it meanwhile), hold its funds in the ledger, record the outcome. The bank
is paid later by a worker (``service_layer.orchestrator``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import structlog
from chassis.kernel.clock import Clock
from chassis.kernel.errors import (
    FailedPrecondition,
    IdempotencyKeyReused,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from chassis.kernel.pagination import Page, parse_page
from chassis.kernel.uow import run_in_transaction
from chassis.tracing import current_traceparent

from payments.domain import validation
from payments.domain.customers import VERIFIED, CustomerKyc
from payments.domain.fees import FeeSchedule
from payments.domain.fraud import FraudRules, Velocity, Verdict, assess
from payments.domain.ledger_plan import (
    LedgerOperation,
    accounts_for,
    customer_account_id,
    operation_for,
)
from payments.domain.limits import AmountLimits
from payments.domain.model import Action, LedgerStep, Payment, PaymentRequest
from payments.domain.reconciliation import (
    ReconciliationReport,
    bookings_to_check,
    reconcile,
)
from payments.domain.refunds import check_refund
from payments.domain.states import PaymentKind, PaymentState
from payments.service_layer.capacity import CapacityWatch
from payments.service_layer.ports import (
    BankGateway,
    BankUnavailable,
    IdentityPort,
    IdentityUnavailable,
    LedgerPort,
    LedgerResult,
    LedgerUnavailable,
)
from payments.service_layer.unit_of_work import PaymentsUnitOfWork

_log = structlog.get_logger("payments")

UowFactory = Callable[[], PaymentsUnitOfWork]


@dataclass(frozen=True)
class Policy:
    """The rules and timings the use cases and workers follow (from settings)."""

    fees: FeeSchedule = field(default_factory=FeeSchedule)
    fraud: FraudRules = field(default_factory=FraudRules)
    limits: AmountLimits = field(default_factory=AmountLimits)
    lease: timedelta = timedelta(seconds=30)
    status_poll: timedelta = timedelta(seconds=60)
    retry_max_seconds: float = 60.0
    # Failed attempts after which a payment is reported as unable to progress.
    stuck_after: int = 10


@dataclass
class Deps:
    uow: UowFactory
    clock: Clock
    ledger: LedgerPort
    identity: IdentityPort
    bank: BankGateway
    policy: Policy = field(default_factory=Policy)
    # Tells this process's workers there is work now (they also poll).
    wake: Callable[[], None] = lambda: None
    # How full the ledger's house accounts are, per currency (read now and then).
    capacity: CapacityWatch = field(default_factory=CapacityWatch)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks, as far as object-level rules care.

    A customer token (a service acting for one customer) acts only on that
    customer's payments and reviews none. A payment held for review is approved
    or rejected by another service client than the one that created it (four
    eyes). An empty ``client_id`` (auth off) has no identity to compare.
    """

    client_id: str = ""
    customer_id: str = ""

    def check_customer(self, customer_id: str) -> None:
        if self.customer_id and self.customer_id != customer_id:
            raise PermissionDenied(
                "NOT_PAYMENT_OWNER", "a customer may act only on its own payments"
            )

    def check_owner(self, payment: Payment) -> Payment:
        self.check_customer(payment.customer_id)
        return payment

    def check_reviewer(self, payment: Payment) -> None:
        if self.customer_id:
            raise PermissionDenied(
                "SERVICE_CALLER_REQUIRED", "a customer token cannot approve or reject payments"
            )
        if self.client_id and self.client_id == payment.created_by:
            raise PermissionDenied(
                "REVIEWER_IS_REQUESTER",
                f"payment {payment.id} was created by {payment.created_by}: "
                "another client must approve or reject it",
                metadata={"payment_id": payment.id},
            )


SERVICE = Caller()


# --- scheduling ----------------------------------------------------------------------------


def backoff(retries: int, cap: float) -> timedelta:
    """Full-jitter exponential wait before trying an unfinished action again."""
    ceiling = min(cap, 0.25 * 2 ** min(retries, 20))
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))  # noqa: S311 - jitter


def schedule(payment: Payment, now: datetime, policy: Policy) -> None:
    """Set when a worker should look at the payment next, from what it needs next."""
    action = payment.next_action()
    if action is Action.NONE:
        payment.next_action_at = None
        payment.retries = 0
    elif action is Action.POLL:
        payment.next_action_at = now + policy.status_poll
    elif payment.retries:
        payment.next_action_at = now + backoff(payment.retries, policy.retry_max_seconds)
        if payment.retries == policy.stuck_after:
            # Once per payment: the line (and payments_stuck) is what an alert fires on.
            _log.error(
                "payment cannot progress",
                payment_id=payment.id,
                state=payment.state.name,
                action=action.value,
                retries=payment.retries,
                ledger_error=payment.ledger_error,
            )
    else:
        payment.next_action_at = now


def declined(payment: Payment) -> FailedPrecondition:
    return FailedPrecondition(
        payment.reason,
        f"payment {payment.id} was declined: {payment.reason}; nothing was sent to the bank",
        metadata={"payment_id": payment.id, "state": PaymentState.DECLINED.name},
    )


def _replay(existing: Payment, request: PaymentRequest) -> Payment:
    if existing.fingerprint != request.fingerprint() or existing.kind is not request.kind:
        raise IdempotencyKeyReused("payment", request.payment_id)
    if existing.state is PaymentState.DECLINED and existing.reason != "REJECTED_IN_REVIEW":
        raise declined(existing)
    return existing


# --- customers (the KYC projection) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomerStatus:
    kyc_status: str
    customer_since: datetime | None


def customer_status(deps: Deps, customer_id: str) -> CustomerStatus:
    """KYC status from payments' projection; identity is asked when it has none or no VERIFIED."""
    with deps.uow() as uow:
        known = uow.payments.customer(customer_id)
    if known is not None and known.verified:
        return CustomerStatus(known.kyc_status, known.customer_since)
    return ask_identity(deps, customer_id, known)


def ask_identity(deps: Deps, customer_id: str, known: CustomerKyc | None) -> CustomerStatus:
    """Identity's answer (stored in the projection), or the projection's when identity is down."""
    try:
        view = deps.identity.get_customer(customer_id)
    except IdentityUnavailable:
        if known is not None:
            # Declining on a slightly old "not verified" is safe; approving on one would not be.
            return CustomerStatus(known.kyc_status, known.customer_since)
        raise Unavailable(
            "IDENTITY_UNAVAILABLE",
            "identity is unavailable and the customer's KYC status is not known here; retry",
        ) from None
    if view is None:
        raise NotFound(
            "CUSTOMER_NOT_FOUND",
            f"customer {customer_id} does not exist",
            metadata={"customer_id": customer_id},
        )

    def store(uow: PaymentsUnitOfWork) -> None:
        uow.payments.upsert_customer(view, deps.clock.now())

    run_in_transaction(deps.uow, store)
    return CustomerStatus(view.kyc_status, view.customer_since)


# --- creating payments ---------------------------------------------------------------------------


def check_creation(
    deps: Deps, request: PaymentRequest, account_field: str, caller: Caller = SERVICE
) -> None:
    """Everything that can refuse one creation on its own, before it joins others.

    Nothing is read or written: a refusal here costs no one else anything.
    (The currency's capacity is checked once the request is known to be new:
    a replay gets its payment whatever the capacity now.)
    """
    caller.check_customer(request.customer_id)
    validation.validate_payment_request(
        request, account_field, deps.policy.limits, fee_of(request, deps.policy)
    )


def fee_of(request: PaymentRequest, policy: Policy) -> int:
    if request.kind is not PaymentKind.PAYOUT:
        return 0
    return policy.fees.fee_for(request.amount, request.currency)


def decide_payment(
    request: PaymentRequest,
    status: CustomerStatus,
    velocity: Velocity,
    policy: Policy,
    now: datetime,
) -> Payment:
    """A new payment from its request: declined, held for review, or ready for its hold."""
    payment = Payment.create(
        request,
        fee=fee_of(request, policy),
        ledger_account_id=customer_account_id(request.customer_id, request.currency),
        now=now,
    )
    payment.trace_context = current_traceparent()
    if status.kyc_status != VERIFIED:
        payment.decline("CUSTOMER_NOT_VERIFIED", now)
        return payment
    decision = assess(
        policy.fraud,
        amount=request.amount,
        currency=request.currency,
        customer_since=status.customer_since,
        now=now,
        velocity=velocity,
    )
    if decision.verdict is Verdict.DECLINE:
        payment.decline(decision.reason, now)
    elif decision.verdict is Verdict.REVIEW:
        payment.review_required = True
        payment.review_reason = decision.reason
        if not payment.outgoing:
            payment.transition(PaymentState.IN_REVIEW, decision.reason, now)
    return payment


@dataclass(frozen=True, slots=True)
class _AskIdentity:
    """The projection cannot decide: identity must be asked, then the creation tried again."""

    known: CustomerKyc | None


def create_payment(deps: Deps, request: PaymentRequest, account_field: str) -> Payment:
    """A payout or a collection (``request.kind``).

    One transaction decides it when the projection knows the customer as
    VERIFIED (the common case); otherwise identity is asked first.
    """
    check_creation(deps, request, account_field)
    policy = deps.policy
    asked: CustomerStatus | None = None

    def work(uow: PaymentsUnitOfWork) -> Payment | _AskIdentity:
        existing = uow.payments.get(request.payment_id, history=True)
        if existing is not None:
            return _replay(existing, request)
        deps.capacity.check(request.currency)
        # One customer's payments are decided one at a time, so velocity rules hold under races.
        known = uow.payments.customer(request.customer_id, lock=True)
        if asked is not None:
            status = asked
        elif known is not None and known.verified:
            status = CustomerStatus(known.kyc_status, known.customer_since)
        else:
            return _AskIdentity(known)
        now = deps.clock.now()
        count, amount = 0, 0
        if policy.fraud.uses_velocity:
            count, amount = uow.payments.velocity(
                request.customer_id, request.currency, now - policy.fraud.velocity_window
            )
        payment = decide_payment(request, status, Velocity(count, amount), policy, now)
        _lease_for_hold(payment, now, policy)
        uow.payments.add(payment)
        return payment

    outcome = run_in_transaction(deps.uow, work)
    if isinstance(outcome, _AskIdentity):
        asked = ask_identity(deps, request.customer_id, outcome.known)
        outcome = run_in_transaction(deps.uow, work)
    assert isinstance(outcome, Payment)
    return _after_create(deps, outcome)


def refund_payment(
    deps: Deps,
    refund_id: str,
    payment_id: str,
    amount: int,
    reason: str,
    caller: Caller = SERVICE,
) -> Payment:
    validation.validate_refund(refund_id, payment_id, amount, reason)
    with deps.uow() as uow:
        original = uow.payments.get(payment_id)
    if original is None:
        raise validation.payment_not_found(payment_id)
    caller.check_owner(original)
    request = PaymentRequest(
        payment_id=refund_id,
        kind=PaymentKind.REFUND,
        customer_id=original.customer_id,
        amount=amount,
        currency=original.currency,
        counterparty=original.counterparty,
        description=reason,
        original_payment_id=original.id,
        requested_by=caller.client_id,
    )
    with deps.uow() as uow:
        existing = uow.payments.get(refund_id, history=True)
    if existing is not None:
        return _replay(existing, request)
    deps.capacity.check(original.currency)
    status = customer_status(deps, original.customer_id)

    def work(uow: PaymentsUnitOfWork) -> Payment:
        # The collection's row lock serializes its refunds: their sum is checked under it.
        locked = uow.payments.get(payment_id, lock=True)
        assert locked is not None
        again = uow.payments.get(refund_id, history=True)
        if again is not None:
            return _replay(again, request)
        now = deps.clock.now()
        check_refund(locked, amount, uow.payments.refunded_amount(payment_id))
        refund = Payment.create(request, fee=0, ledger_account_id=locked.ledger_account_id, now=now)
        refund.trace_context = current_traceparent()
        if status.kyc_status != VERIFIED:
            refund.decline("CUSTOMER_NOT_VERIFIED", now)
        _lease_for_hold(refund, now, deps.policy)
        uow.payments.add(refund)
        return refund

    refund = run_in_transaction(deps.uow, work)
    return _after_create(deps, refund)


def _lease_for_hold(payment: Payment, now: datetime, policy: Policy) -> None:
    if payment.state is PaymentState.CREATED and payment.outgoing:
        # The caller places the hold now; if it dies, a worker does after the lease.
        payment.leased_until = now + policy.lease
        payment.next_action_at = now + policy.lease
    else:
        schedule(payment, now, policy)


def _after_create(deps: Deps, payment: Payment) -> Payment:
    if payment.state is PaymentState.DECLINED:
        raise declined(payment)
    if payment.outgoing and payment.state is PaymentState.CREATED:
        payment = place_hold(deps, payment)
        if payment.state is PaymentState.DECLINED:
            raise declined(payment)
    if payment.next_action_at is not None and payment.next_action_at <= deps.clock.now():
        deps.wake()
    return payment


def place_hold(deps: Deps, payment: Payment) -> Payment:
    """Hold an outgoing payment's funds in the ledger and record what happened.

    The payment is committed already: if the outcome cannot be recorded, the
    caller still gets the payment as committed (CREATED), and a worker places
    the hold again once the lease ends (the same transfer id: never held twice).
    """
    result = hold_funds(deps.ledger, payment)

    def work(uow: PaymentsUnitOfWork) -> Payment:
        current = uow.payments.get(payment.id, lock=True)
        assert current is not None
        current.history = list(payment.history)
        apply_hold_result(current, result, deps.clock.now())
        current.leased_until = None
        schedule(current, deps.clock.now(), deps.policy)
        uow.payments.save(current)
        return current

    try:
        return run_in_transaction(deps.uow, work)
    except Exception:
        _log.exception(
            "the hold's outcome was not recorded; a worker redoes it", payment_id=payment.id
        )
        return payment


def hold_funds(ledger: LedgerPort, payment: Payment) -> LedgerResult | None:
    """The ledger's answer to the payment's hold; None when no answer came."""
    try:
        ledger.ensure_accounts(accounts_for(payment))
        return ledger.apply_one(operation_for(payment, LedgerStep.HOLD))
    except LedgerUnavailable:
        _log.warning("ledger unavailable for a hold; a worker retries", payment_id=payment.id)
        return None
    except Exception:
        # Its outcome is unknown, like a timeout's: asked again later under the same id.
        _log.exception("a hold failed unexpectedly; a worker retries", payment_id=payment.id)
        return None


def book(ledger: LedgerPort, operations: Sequence[LedgerOperation]) -> list[LedgerResult | None]:
    """The ledger's answer to each operation, in order; None where no answer came.

    One request for all of them. If it fails as a whole for another reason than
    the ledger being out of reach (one malformed operation, a bug), it is split
    in halves and each is asked again, down to single operations: one bad
    operation costs only its own answer. Asking again is safe: every operation
    carries its own transfer id, so the ledger replays what it already did.
    """
    if not operations:
        return []
    try:
        return list(ledger.apply(operations))
    except LedgerUnavailable:
        _log.warning("ledger unavailable; bookings retried later", count=len(operations))
        return [None] * len(operations)
    except Exception:
        if len(operations) == 1:
            _log.exception(
                "a ledger booking failed; retried later",
                transfer_id=operations[0].transfer_id,
            )
            return [None]
        half = len(operations) // 2
        return book(ledger, operations[:half]) + book(ledger, operations[half:])


def apply_hold_result(payment: Payment, result: LedgerResult | None, now: datetime) -> None:
    if payment.state is not PaymentState.CREATED:
        return  # decided meanwhile (a worker after an expired lease); the ledger replays
    if result is None:
        payment.hold_unanswered()
        payment.retries += 1
    elif result.ok:
        payment.retries = 0
        payment.hold_placed(now)
    else:
        # The ledger records a refusal under the transfer id: asking again gives the same.
        payment.retries = 0
        payment.hold_refused(result.reason, now)


# --- changing payments ----------------------------------------------------------------------------


def _change(
    deps: Deps,
    payment_id: str,
    change: Callable[[Payment, datetime], None],
    check: Callable[[Payment], object],
) -> Payment:
    validation.validate_payment_id(payment_id)

    def work(uow: PaymentsUnitOfWork) -> Payment:
        payment = uow.payments.get(payment_id, lock=True, history=True)
        if payment is None:
            raise validation.payment_not_found(payment_id)
        check(payment)
        before = payment.transition_count
        now = deps.clock.now()
        change(payment, now)
        if payment.transition_count != before:
            payment.retries = 0
            schedule(payment, now, deps.policy)
            uow.payments.save(payment)
        return payment

    payment = run_in_transaction(deps.uow, work)
    if payment.next_action_at is not None and payment.next_action_at <= deps.clock.now():
        deps.wake()
    return payment


def cancel_payment(
    deps: Deps, payment_id: str, reason: str = "", caller: Caller = SERVICE
) -> Payment:
    validation.validate_note(reason, "reason")
    return _change(
        deps, payment_id, lambda p, now: p.cancel(now, _reason(reason)), caller.check_owner
    )


def approve_payment(
    deps: Deps, payment_id: str, note: str = "", caller: Caller = SERVICE
) -> Payment:
    validation.validate_note(note, "note")
    return _change(
        deps, payment_id, lambda p, now: p.approve(now, caller.client_id), caller.check_reviewer
    )


def reject_payment(
    deps: Deps, payment_id: str, note: str = "", caller: Caller = SERVICE
) -> Payment:
    validation.validate_note(note, "note")
    return _change(
        deps, payment_id, lambda p, now: p.reject(now, caller.client_id), caller.check_reviewer
    )


def _reason(text: str) -> str:
    """A client's free-text cancel reason stays in the log; the transition gets a stable one."""
    if text:
        _log.info("cancel requested", note=text)
    return "CANCELED_BY_CLIENT"


# --- queries --------------------------------------------------------------------------------------


def get_payment(deps: Deps, payment_id: str, caller: Caller = SERVICE) -> Payment:
    validation.validate_payment_id(payment_id)
    with deps.uow() as uow:
        payment = uow.payments.get(payment_id, history=True)
    if payment is None:
        raise validation.payment_not_found(payment_id)
    return caller.check_owner(payment)


def list_payments(
    deps: Deps,
    page_size: int,
    page_token: str,
    customer_id: str = "",
    state: PaymentState | None = None,
    caller: Caller = SERVICE,
) -> Page[Payment]:
    validation.validate_customer_filter(customer_id)
    if caller.customer_id:
        caller.check_customer(customer_id or caller.customer_id)
        customer_id = caller.customer_id
    filters = {"customer_id": customer_id, "state": int(state) if state else 0}
    page = parse_page(page_size, page_token, filters, after_rule=validation.is_payment_id)
    with deps.uow() as uow:
        items = uow.payments.page(page.after, page.fetch, customer_id, state)
    return page.page(items, lambda payment: payment.id)


# --- reconciliation -------------------------------------------------------------------------------


def run_reconciliation(deps: Deps, run_id: str, statement_date: str) -> ReconciliationReport:
    day = validation.validate_run(run_id, statement_date, deps.clock.now().date())
    with deps.uow() as uow:
        existing = uow.payments.get_run(run_id)
    if existing is not None:
        return _replay_run(existing, day)
    try:
        lines = deps.bank.statement(day)
    except BankUnavailable:
        raise Unavailable("BANK_UNAVAILABLE", "the bank's statement could not be read") from None
    start = datetime.combine(day, time.min).replace(tzinfo=deps.clock.now().tzinfo)
    with deps.uow() as uow:
        booked = uow.payments.booked_with_bank_on(day, start, start + timedelta(days=1))
        payments = {p.id: p for p in booked}
        referenced = {line.reference for line in lines} - set(payments)
        payments.update(uow.payments.get_many(referenced))
    try:
        # Only the bookings the statement's lines name: the clearing account's
        # whole journal grows with every payment ever made.
        bookings = deps.ledger.clearing_bookings(bookings_to_check(lines, payments))
    except LedgerUnavailable:
        raise Unavailable("LEDGER_UNAVAILABLE", "the ledger could not be read") from None
    report = reconcile(run_id, day, lines, payments, bookings, deps.clock.now())

    def work(uow: PaymentsUnitOfWork) -> ReconciliationReport:
        again = uow.payments.get_run(run_id)
        if again is not None:
            return _replay_run(again, day)
        uow.payments.add_run(report)
        return report

    saved = run_in_transaction(deps.uow, work)
    _log.info(
        "reconciliation finished",
        run_id=run_id,
        day=day.isoformat(),
        lines=saved.line_count,
        matched=saved.matched,
        breaks=len(saved.breaks),
    )
    return saved


def _replay_run(existing: ReconciliationReport, day: date) -> ReconciliationReport:
    if existing.statement_date != day:
        raise IdempotencyKeyReused("reconciliation run", existing.run_id)
    return existing


def get_reconciliation_run(deps: Deps, run_id: str) -> ReconciliationReport:
    validation.validate_run_id(run_id)
    with deps.uow() as uow:
        run = uow.payments.get_run(run_id)
    if run is None:
        raise NotFound(
            "RECONCILIATION_RUN_NOT_FOUND",
            f"reconciliation run {run_id} does not exist",
            metadata={"run_id": run_id},
        )
    return run
