"""The rounds that drive payments forward: bank submissions, status resolution, ledger follow-ups.

Each function here is one round, run once by whoever calls it: the worker
threads of ``payments.entrypoints.workers`` call them in loops, tests and
tools call them by hand. Work is found in the payments table itself: every
payment with something left to do has ``next_action_at`` set (see
``payments.domain.progress``, which decides what each step and each answer
does to a payment). A round over due payments (``process_due``):

1. claim: in one transaction, lock due payments nobody holds (``FOR UPDATE
   SKIP LOCKED`` on PostgreSQL, so several processes share the queue), lease
   them, and move those ready for the bank to SUBMITTING (from then on they
   can no longer be canceled, and the submission counts as made);
2. act, outside any transaction: one ledger request for all the ledger
   bookings of the round, and the bank calls through the caller's ``CallMap``
   (a thread pool's ``map`` makes them concurrently);
3. apply: in one transaction, reload the payments under lock and apply what
   came back through the domain (which also accepts the bank's reports in any
   order), release the leases and schedule what comes next.

A payment whose submission got no answer stays SUBMITTING; the next round
asks the bank for it by its idempotency key and sends it again (same key) only
if the bank has never seen it. The bank's own event feed (``follow_bank_feed``,
followed by one process at a time) reports acceptance, settlement, failure and
returns without any per-payment polling; a submitted payment is asked about
directly only if the feed stayed silent for ``status_poll``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date, timedelta
from typing import Protocol

import structlog
from chassis.kernel.uow import run_in_transaction
from chassis.tracing import batch_span, resumed_span

from payments.domain import progress
from payments.domain.bank import BankEvent, LookupResult, instruction_for
from payments.domain.ledger_plan import LedgerOperation, LedgerResult, accounts_for, operation_for
from payments.domain.model import Action, LedgerStep, Payment
from payments.domain.progress import Answer, Work
from payments.service_layer.unit_of_work import PaymentsUnitOfWork
from payments.service_layer.use_cases import Deps, book, notice, run_reconciliation, schedule

_log = structlog.get_logger("payments.worker")

FEED = "bank-events"


class CallMap(Protocol):
    """How a round makes its bank calls: one result per claimed payment, in order.

    The builtin ``map`` makes them one after another; a thread pool's ``map``
    (``ThreadPoolExecutor.map``) makes them concurrently. The round neither
    knows nor cares which.
    """

    def __call__(
        self, call: Callable[[Work], Answer], work: Sequence[Work], /
    ) -> Iterable[Answer]: ...


# --- due payments -----------------------------------------------------------------------------


def process_due(deps: Deps, *, batch_size: int = 200, call_map: CallMap = map) -> int:
    """One round over due payments: claim up to ``batch_size``, act on each, record the
    outcomes. Returns how many were worked on (``batch_size``: there may be more)."""
    claimed = _claim(deps, batch_size)
    if not claimed:
        return 0
    _apply(deps, claimed, _act(deps, claimed, call_map))
    return len(claimed)


def _claim(deps: Deps, batch_size: int) -> list[Work]:
    def work(uow: PaymentsUnitOfWork) -> list[Work]:
        now = deps.clock.now()
        due = uow.payments.claim_due(now, batch_size)
        claimed = [progress.claim(payment, now, deps.policy) for payment in due]
        uow.payments.save_all(due)
        return [work for work in claimed if work is not None]

    return run_in_transaction(deps.uow, work)


def _act(deps: Deps, claimed: Sequence[Work], call_map: CallMap) -> dict[str, Answer]:
    results = {w.payment.id: Answer() for w in claimed}
    ledger_work = [w for w in claimed if w.step is not None]
    if ledger_work:
        for work, booked in zip(ledger_work, _book(deps, ledger_work), strict=True):
            results[work.payment.id].ledger = booked
    bank_work = [w for w in claimed if w.step is None]
    if bank_work:

        def call(work: Work) -> Answer:
            return _bank_call(deps, work)

        for work, result in zip(bank_work, call_map(call, bank_work), strict=True):
            results[work.payment.id] = result
    return results


def _book(deps: Deps, work: Sequence[Work]) -> list[LedgerResult | None]:
    # One ledger call serves many payments: it joins the first one's trace, links the rest.
    traces = [w.payment.trace_context for w in work]
    with batch_span("payments.book", traces, payments=len(work)):
        return _book_traced(deps, work)


def _book_traced(deps: Deps, work: Sequence[Work]) -> list[LedgerResult | None]:
    operations: list[LedgerOperation] = []
    for item in work:
        assert item.step is not None
        operations.append(operation_for(item.payment, item.step))
    try:
        booking = (LedgerStep.HOLD, LedgerStep.CREDIT)
        needs_accounts = [w.payment for w in work if w.step in booking]
        specs = {s.id: s for p in needs_accounts for s in accounts_for(p)}
        if specs:
            deps.ledger.ensure_accounts(list(specs.values()))
    except Exception as error:
        # Booking on an account that may not be open would be refused for good.
        _log.warning(
            "ledger accounts not ensured; bookings retried later",
            count=len(operations),
            error=repr(error),
        )
        return [None] * len(operations)
    return book(deps.ledger, operations)


def _bank_call(deps: Deps, work: Work) -> Answer:
    with resumed_span(
        work.payment.trace_context,
        f"payments.bank.{work.action.name.lower()}",
        payment_id=work.payment.id,
    ):
        try:
            return _bank_call_traced(deps, work)
        except Exception:
            # This payment's call alone: the round's other payments go on.
            _log.exception(
                "bank call failed unexpectedly; retried later", payment_id=work.payment.id
            )
            return Answer()


def _bank_call_traced(deps: Deps, work: Work) -> Answer:
    bank = deps.bank
    payment = work.payment
    if work.action is Action.SUBMIT:
        return Answer(submit=bank.submit(instruction_for(payment)))
    lookup = bank.lookup(payment.id)
    if work.action is Action.RESOLVE and lookup.result is LookupResult.NOT_FOUND:
        # The bank has never seen it: sending again (same key) cannot pay twice.
        _log.info("bank has no record; submitting again", payment_id=payment.id)
        return Answer(submit=bank.submit(instruction_for(payment)), resent=True)
    return Answer(lookup=lookup)


def _apply(deps: Deps, claimed: Sequence[Work], results: dict[str, Answer]) -> None:
    def work(uow: PaymentsUnitOfWork) -> None:
        now = deps.clock.now()
        current = uow.payments.get_many((w.payment.id for w in claimed), lock=True)
        for item in claimed:
            payment = current.get(item.payment.id)
            if payment is None:
                continue
            try:
                notice(progress.apply_answer(payment, item, results[payment.id], now))
            except Exception:
                _log.exception("applying an answer failed; retried later", payment_id=payment.id)
                payment.retries += 1
            payment.leased_until = None
            schedule(payment, now, deps.policy)
        uow.payments.save_all(list(current.values()))

    run_in_transaction(deps.uow, work)


# --- the bank's event feed ----------------------------------------------------------------------


def follow_bank_feed(
    deps: Deps, *, wait_seconds: float = 10.0, stopping: Callable[[], bool] = lambda: False
) -> int:
    """Read the feed's next events after the stored cursor (a long poll of up to
    ``wait_seconds``) and apply them; returns how many.

    When ``stopping()`` is true once the poll returns, its page is left to the
    next reader: the cursor moves only with the events' effects, so nothing is lost.
    """
    with deps.uow() as uow:
        cursor = uow.payments.cursor(FEED)
    events, next_after = deps.bank.events(cursor, wait_seconds)
    if not events or stopping():
        return 0
    bookings = apply_bank_events(deps, events, next_after)
    if bookings:
        # Booked here and now rather than by a worker's next round: one claim fewer.
        # They are ledger bookings only: no bank call to spread over threads.
        _apply(deps, bookings, _act(deps, bookings, map))
    return len(events)


def apply_bank_events(deps: Deps, events: Sequence[BankEvent], next_after: int) -> list[Work]:
    """Apply a page of the bank's feed and move the cursor, in one transaction.

    Payments that now have a ledger booking to make are leased to the caller,
    which books them at once; returns them.
    """

    def work(uow: PaymentsUnitOfWork) -> list[Work]:
        now = deps.clock.now()
        references = {e.payment.reference for e in events}
        payments = uow.payments.get_many(references, lock=True)
        changed: dict[str, Payment] = {}
        for event in events:
            payment = payments.get(event.payment.reference)
            if payment is None:
                _log.warning(
                    "bank event for an unknown payment",
                    reference=event.payment.reference,
                    bank_payment_id=event.payment.bank_payment_id,
                )
                continue
            before = (payment.transition_count, payment.bank_payment_id)
            notice(progress.bank_reported(payment, event.status, event.payment, now))
            if (payment.transition_count, payment.bank_payment_id) != before:
                changed[payment.id] = payment
        bookings = []
        for payment in changed.values():
            schedule(payment, now, deps.policy)
            booking = progress.book_now(payment, now, deps.policy)
            if booking is not None:
                bookings.append(booking)
        uow.payments.save_all(list(changed.values()))
        uow.payments.set_cursor(FEED, next_after)
        return bookings

    return run_in_transaction(deps.uow, work)


# --- the daily reconciliation ---------------------------------------------------------------------


def ensure_reconciled(deps: Deps, day: date) -> str:
    """Make sure the bank's statement of ``day`` is reconciled; returns the run id.

    The run id is derived from the day, so every process and every call after
    the first gets the same run back instead of a second run.
    """
    run_id = f"rec_daily_{day:%Y%m%d}"
    run_reconciliation(deps, run_id, day.isoformat())
    return run_id


def reconcile_yesterday(deps: Deps) -> str:
    """Yesterday's statement (complete by now) reconciled, once; returns the run id."""
    return ensure_reconciled(deps, deps.clock.now().date() - timedelta(days=1))
