"""Payments' use cases: one function per command or query.

They orchestrate; what a payment becomes is decided in ``payments.domain``. A
payment and each of its transitions are written in one transaction with their
outbox events; calls to the ledger, identity and the bank happen outside any
transaction. Creating a payout is: record it (leased, so no one else acts on
it meanwhile), hold its funds in the ledger, record the outcome
(``service_layer.creation`` decides payouts and collections in groups). The
bank is paid later by a worker's round (``service_layer.rounds``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import structlog
from chassis.db.retry import DATABASE_UNAVAILABLE
from chassis.kernel.audit import Requester
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
from chassis.tracing import batch_span, current_traceparent

from payments.domain import progress, sanctions, validation
from payments.domain.creation import declined, replay
from payments.domain.customers import (
    CustomerErasure,
    CustomerKyc,
    CustomerStatus,
    check_approvable,
    hold_for_customer_review,
)
from payments.domain.ledger_plan import LedgerOperation, LedgerResult, accounts_for, operation_for
from payments.domain.model import LedgerStep, Payment, PaymentRequest
from payments.domain.policy import Policy
from payments.domain.reconciliation import (
    ReconciliationReport,
    bookings_to_check,
    reconcile,
)
from payments.domain.refunds import decide_refund
from payments.domain.states import PaymentKind, PaymentState
from payments.service_layer.capacity import CapacityWatch
from payments.service_layer.ports import (
    BankGateway,
    BankUnavailable,
    FraudModel,
    IdentityPort,
    IdentityUnavailable,
    LedgerPort,
    LedgerUnavailable,
)
from payments.service_layer.unit_of_work import PaymentsUnitOfWork

_log = structlog.get_logger("payments")

UowFactory = Callable[[], PaymentsUnitOfWork]


@dataclass
class Deps:
    uow: UowFactory
    clock: Clock
    ledger: LedgerPort
    identity: IdentityPort
    bank: BankGateway
    policy: Policy = field(default_factory=Policy)
    # Tells this process's worker loops there is work now (they also poll); the loops
    # set it when they start (``entrypoints.workers.PaymentRounds``).
    wake: Callable[[], None] = lambda: None
    # How full the ledger's house accounts are, per currency (read now and then).
    capacity: CapacityWatch = field(default_factory=CapacityWatch)
    # The learned fraud score (None: payments are not scored).
    fraud_model: FraudModel | None = None


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
    # The call's request id, recorded with what the call writes.
    request_id: str = ""

    @classmethod
    def of(cls, requester: Requester | None) -> Caller:
        if requester is None:
            return SERVICE
        return cls(requester.client_id, requester.customer_id or "", requester.request_id)

    @property
    def requester(self) -> Requester | None:
        """Who asks, as writes record it; None for a caller without an identity (auth off)."""
        if not self.client_id:
            return None
        return Requester(self.client_id, self.customer_id or None, self.request_id)

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
        maker = payment.created_by
        if self.client_id and maker is not None and self.client_id == maker.client_id:
            raise PermissionDenied(
                "REVIEWER_IS_REQUESTER",
                f"payment {payment.id} was created by {maker.client_id}: "
                "another client must approve or reject it",
                metadata={"payment_id": payment.id},
            )


SERVICE = Caller()


# --- what operators must see --------------------------------------------------------------


def notice(anomaly: progress.Anomaly | None) -> None:
    """Log what the domain says operators must see (alerts fire on these lines)."""
    if anomaly is not None:
        _log.error(anomaly.event, **anomaly.fields)


def schedule(payment: Payment, now: datetime, policy: Policy) -> None:
    """Set when a worker should look at the payment next (``progress.schedule``)."""
    notice(progress.schedule(payment, now, policy))


# --- customers (the KYC projection) -----------------------------------------------------------


def record_customer_kyc(
    uow: Callable[[], PaymentsUnitOfWork], clock: Clock, kyc: CustomerKyc
) -> bool:
    """Identity's word on a customer (an event of its, or its answer) into the projection.

    The newest ``kyc_version`` wins whatever order they come in; returns whether this
    one was stored.
    """

    def store(work: PaymentsUnitOfWork) -> bool:
        now = clock.now()
        before = work.payments.customer(kyc.customer_id, lock=True)
        stored = work.payments.upsert_customer(kyc, now)
        if stored and before is not None and before.verified and not kyc.verified:
            # No longer VERIFIED (identity's sanctions screening took it back): what it has
            # not given to the bank yet waits for a reviewer, as its new payments are declined.
            ids = work.payments.open_of_customer(kyc.customer_id)
            held = [
                payment
                for payment in work.payments.get_many(ids, lock=True).values()
                if hold_for_customer_review(payment, now)
            ]
            for payment in held:
                # Nothing is scheduled for a payment in review (the policy's timings unused).
                progress.schedule(payment, now, Policy())
            work.payments.save_all(held)
        return stored

    return run_in_transaction(uow, store)


def erase_customer_data(
    uow: Callable[[], PaymentsUnitOfWork], clock: Clock, customer_id: str
) -> int:
    """Destroy a customer's personal data in payments (identity erased the customer); the
    payments, their amounts, states and history stay. Idempotent: a second erasure finds
    nothing and records nothing. Returns how many payments lost personal data."""
    validation.validate_customer_id(customer_id)

    def erase(work: PaymentsUnitOfWork) -> int:
        erasure = CustomerErasure(customer_id, clock.now())
        # No new payment for it from now on (the KYC gate declines one not VERIFIED).
        work.payments.upsert_customer(CustomerKyc.erased(customer_id), erasure.occurred_at)
        count, key_destroyed = work.payments.erase_customer(erasure)
        erasure.done(count, key_destroyed)
        return count

    return run_in_transaction(uow, erase)


def customer_status(deps: Deps, customer_id: str) -> CustomerStatus:
    """KYC status from payments' projection; identity is asked when it has none or no VERIFIED."""
    with deps.uow() as uow:
        known = uow.payments.customer(customer_id)
    if known is not None and known.verified:
        return CustomerStatus.of(known)
    return ask_identity(deps, customer_id, known)


def ask_identity(deps: Deps, customer_id: str, known: CustomerKyc | None) -> CustomerStatus:
    """Identity's answer (stored in the projection), or the projection's when identity is down."""
    try:
        view = deps.identity.get_customer(customer_id)
    except IdentityUnavailable:
        if known is not None:
            # Declining on a slightly old "not verified" is safe; approving on one would not be.
            return CustomerStatus.of(known)
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
    record_customer_kyc(deps.uow, deps.clock, view)
    # The newest word wins here too: an answer older than what is known (an erasure,
    # a KYC change identity's replica has not seen yet) does not decide.
    newest = known if known is not None and known.kyc_version > view.kyc_version else view
    return CustomerStatus.of(newest)


# --- creating payments (payouts and collections: ``service_layer.creation``) ------------------


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
        request, account_field, deps.policy.limits, deps.policy.fee_for(request)
    )


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
        requested_by=caller.requester,
    )
    with deps.uow() as uow:
        existing = uow.payments.get(refund_id, history=True)
    if existing is not None:
        return replay(existing, request)
    deps.capacity.check(original.currency)
    status = customer_status(deps, original.customer_id)

    def work(uow: PaymentsUnitOfWork) -> Payment:
        # The collection's row lock serializes its refunds: their sum is checked under it.
        locked = uow.payments.get(payment_id, lock=True)
        assert locked is not None
        again = uow.payments.get(refund_id, history=True)
        if again is not None:
            return replay(again, request)
        now = deps.clock.now()
        refunded = uow.payments.refunded_amount(payment_id)
        refund = decide_refund(request, locked, refunded, status, now, current_traceparent())
        progress.lease_for_hold(refund, now, deps.policy)
        uow.payments.add(refund)
        return refund

    refund = run_in_transaction(deps.uow, work)
    answer = answer_created(deps, [refund])[refund.id]
    if isinstance(answer, Exception):
        raise answer
    return answer


def answer_created(
    deps: Deps, payments: Sequence[Payment]
) -> dict[str, Payment | FailedPrecondition]:
    """What the callers of payments just committed get, by payment id. Never raises.

    Outgoing ones still CREATED get their holds first (one ledger request for all);
    a declined payment is its caller's refusal. Workers are woken when something is
    due now. A hold whose outcome is not recorded leaves its payment as committed:
    a worker holds it again after the lease, under the same transfer id.
    """
    waiting = [p for p in payments if p.outgoing and p.state is PaymentState.CREATED]
    held = hold_many(deps, waiting) if waiting else {}
    now = deps.clock.now()
    answers: dict[str, Payment | FailedPrecondition] = {}
    wake = False
    for payment in payments:
        current = held.get(payment.id, payment)
        if current.state is PaymentState.DECLINED:
            answers[current.id] = declined(current)
            continue
        answers[current.id] = current
        wake = wake or (current.next_action_at is not None and current.next_action_at <= now)
    if wake:
        deps.wake()
    return answers


# --- holds and bookings ---------------------------------------------------------------------


def hold_many(deps: Deps, payments: Sequence[Payment]) -> dict[str, Payment]:
    """Hold the funds of outgoing payments with one ledger request; record the outcomes.

    Returns the payments whose outcome was recorded. It never raises: the
    payments are committed, and one left out (no answer, or its outcome not
    written) stays CREATED for a worker to hold again after its lease.
    """
    results: dict[str, LedgerResult | None] = dict.fromkeys((p.id for p in payments), None)
    traces = [p.trace_context for p in payments]
    with batch_span("payments.hold", traces, payments=len(payments)):
        try:
            specs = {s.id: s for p in payments for s in accounts_for(p)}
            deps.ledger.ensure_accounts(list(specs.values()))
        except Exception as error:
            # Holding on an account that may not be open would refuse it for good.
            _log.warning(
                "ledger accounts not ensured; a worker holds later",
                count=len(payments),
                error=repr(error),
            )
        else:
            answers = book(deps.ledger, [operation_for(p, LedgerStep.HOLD) for p in payments])
            results = {p.id: a for p, a in zip(payments, answers, strict=True)}
    histories = {p.id: p.history for p in payments}
    decisions = {p.id: p.risk_decision for p in payments}

    def record(batch: Sequence[Payment]) -> dict[str, Payment]:
        def work(uow: PaymentsUnitOfWork) -> dict[str, Payment]:
            now = deps.clock.now()
            current = uow.payments.get_many((p.id for p in batch), lock=True)
            for payment in current.values():
                payment.history = list(histories[payment.id])
                # Read with the lock, without its decision: the caller's answer shows it.
                payment.risk_decision = decisions[payment.id]
                progress.apply_hold_result(payment, results[payment.id], now)
                payment.leased_until = None
                schedule(payment, now, deps.policy)
            uow.payments.save_all(list(current.values()))
            return current

        return run_in_transaction(deps.uow, work)

    try:
        return record(payments)
    except DATABASE_UNAVAILABLE:
        _log.warning("holds not recorded: database unavailable", count=len(payments))
        return {}
    except Exception:
        if len(payments) == 1:
            _log.exception("a hold's outcome was not recorded", payment_id=payments[0].id)
            return {}
        _log.exception("holds not recorded together; one by one", count=len(payments))
    recorded: dict[str, Payment] = {}
    for payment in payments:
        try:
            recorded.update(record([payment]))
        except Exception:
            _log.exception("a hold's outcome was not recorded", payment_id=payment.id)
    return recorded


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


# --- changing payments ----------------------------------------------------------------------------


def _change(
    deps: Deps,
    payment_id: str,
    change: Callable[[Payment, datetime], None],
    check: Callable[[Payment], object],
    guard: Callable[[PaymentsUnitOfWork, Payment], None] | None = None,
) -> Payment:
    validation.validate_payment_id(payment_id)

    def work(uow: PaymentsUnitOfWork) -> Payment:
        payment = uow.payments.get(payment_id, lock=True, history=True)
        if payment is None:
            raise validation.payment_not_found(payment_id)
        check(payment)
        if guard is not None:
            guard(uow, payment)
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
        deps,
        payment_id,
        lambda p, now: p.approve(now, caller.requester, note),
        caller.check_reviewer,
        _customer_still_verified,
    )


def _customer_still_verified(uow: PaymentsUnitOfWork, payment: Payment) -> None:
    # Read without a lock: a KYC change that lands after this approval holds the
    # payment for review again (customers.hold_for_customer_review), as it would any.
    if payment.review_outcome == "APPROVED":
        return  # a replayed approval changes nothing
    known = uow.payments.customers([payment.customer_id]).get(payment.customer_id)
    check_approvable(payment, known)


def reject_payment(
    deps: Deps, payment_id: str, note: str = "", caller: Caller = SERVICE
) -> Payment:
    validation.validate_note(note, "note")
    return _change(
        deps,
        payment_id,
        lambda p, now: p.reject(now, caller.requester, note),
        caller.check_reviewer,
    )


def _reason(text: str) -> str:
    """A client's free-text cancel reason stays in the log; the transition gets a stable one."""
    if text:
        _log.info("cancel requested", note=text)
    return "CANCELED_BY_CLIENT"


# --- sanctions screening ------------------------------------------------------------------------

RESCREEN_BATCH = 200


@dataclass(frozen=True, slots=True)
class Rescreened:
    """One batch of ``rescreen_open_payments``: how many changed, and where the next begins
    (None: no open payment is left after this batch)."""

    changed: int
    next_after: str | None


def rescreen_open_payments(deps: Deps, after: str = "", limit: int = RESCREEN_BATCH) -> Rescreened:
    """Screen the next ``limit`` payments not yet given to the bank (ids after ``after``)
    against the loaded list, unless screened with this version already
    (``domain.sanctions.rescreen``). One transaction with the rows locked: a worker taking
    one to the bank meanwhile either waits for it or has taken it out of reach first.
    Running it again (another process, a retry after a crash) finds only what is left."""
    screener = deps.policy.sanctions
    if screener is None:
        return Rescreened(0, None)
    with deps.uow() as uow:
        ids = uow.payments.open_for_screening(after, limit)
    if not ids:
        return Rescreened(0, None)

    def work(uow: PaymentsUnitOfWork) -> int:
        now = deps.clock.now()
        touched = []
        for payment in uow.payments.get_many(ids, lock=True).values():
            before = payment.transition_count
            if sanctions.rescreen(payment, screener, now):
                if payment.transition_count != before:
                    payment.retries = 0
                    schedule(payment, now, deps.policy)
                touched.append(payment)
        uow.payments.save_all(touched)
        return len(touched)

    changed = run_in_transaction(deps.uow, work)
    if changed:
        _log.info("open payments screened", list_version=screener.version, changed=changed)
    return Rescreened(changed, ids[-1])


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
