"""The workers that drive payments forward: bank submissions, status resolution, ledger follow-ups.

Work is found in the payments table itself: every payment with something left
to do has ``next_action_at`` set (see ``use_cases.schedule``). A round:

1. claim: in one transaction, lock due payments nobody holds (``FOR UPDATE
   SKIP LOCKED`` on PostgreSQL, so several processes share the queue), lease
   them, and move those ready for the bank to SUBMITTING (from then on they
   can no longer be canceled, and the submission counts as made);
2. act, outside any transaction: one ledger request for all the ledger
   bookings of the round, and the bank calls concurrently on a thread pool;
3. apply: in one transaction, reload the payments under lock and apply what
   came back through the domain (which also accepts the bank's reports in any
   order), release the leases and schedule what comes next.

A payment whose submission got no answer stays SUBMITTING; the next round
asks the bank for it by its idempotency key and sends it again (same key) only
if the bank has never seen it. The bank's own event feed is followed by one
process at a time (``follow_bank_feed``) and reports acceptance, settlement,
failure and returns without any per-payment polling; a submitted payment is
asked about directly only if the feed stayed silent for ``status_poll``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from chassis.kernel.uow import run_in_transaction
from chassis.tracing import batch_span, resumed_span

from payments.domain.ledger_plan import LedgerOperation, accounts_for, operation_for
from payments.domain.model import Action, BankStatus, LedgerStep, Payment
from payments.service_layer.ports import (
    BankEvent,
    BankInstruction,
    BankPaymentView,
    BankUnavailable,
    LedgerResult,
    LookupOutcome,
    LookupResult,
    SubmitOutcome,
    SubmitResult,
)
from payments.service_layer.unit_of_work import PaymentsUnitOfWork
from payments.service_layer.use_cases import (
    Deps,
    apply_hold_result,
    book,
    run_reconciliation,
    schedule,
)

_log = structlog.get_logger("payments.worker")

FEED = "bank-events"
# How long stopping waits for the feed thread, which may be inside a long poll.
FEED_STOP_GRACE = 1.0
# A void that finds nothing to release has nothing left to do.
_VOID_DONE = frozenset({"PENDING_TRANSFER_NOT_FOUND", "ALREADY_VOIDED", "PENDING_TRANSFER_EXPIRED"})


@dataclass(frozen=True, slots=True)
class _Work:
    payment: Payment
    action: Action
    step: LedgerStep | None = None


@dataclass(slots=True)
class _Result:
    ledger: LedgerResult | None = None
    submit: SubmitOutcome | None = None
    lookup: LookupOutcome | None = None
    resent: bool = False


def instruction_for(payment: Payment) -> BankInstruction:
    return BankInstruction(
        idempotency_key=payment.id,
        outgoing=payment.outgoing,
        amount=payment.amount,
        currency=payment.currency,
        counterparty=payment.counterparty,
        reference=payment.id,
    )


class Orchestrator:
    def __init__(
        self,
        deps: Deps,
        *,
        batch_size: int = 200,
        threads: int = 16,
        poll_seconds: float = 0.5,
        feed_wait_seconds: float = 10.0,
        feed_lock: Callable[[], AbstractContextManager[bool]] | None = None,
    ) -> None:
        self.deps = deps
        self._batch = batch_size
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bank-call")
        self._poll = poll_seconds
        self._feed_wait = feed_wait_seconds
        self._feed_lock = feed_lock or _always
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._feed_thread: threading.Thread | None = None

    # --- rounds ----------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def process_due(self) -> int:
        """One round over due payments; returns how many were worked on."""
        claimed = self._claim()
        if not claimed:
            return 0
        results = self._act(claimed)
        self._apply(claimed, results)
        return len(claimed)

    def _claim(self) -> list[_Work]:
        deps = self.deps

        def work(uow: PaymentsUnitOfWork) -> list[_Work]:
            now = deps.clock.now()
            claimed = []
            touched = []
            for payment in uow.payments.claim_due(now, self._batch):
                action = payment.next_action()
                step = None
                if action is Action.LEDGER:
                    step = payment.pending_ledger_step()
                elif action is Action.PLACE_HOLD:
                    step = LedgerStep.HOLD
                elif action is Action.SUBMIT:
                    payment.start_submission(now)
                    payment.bank_attempts += 1
                elif action is Action.NONE:
                    payment.next_action_at = None
                    touched.append(payment)
                    continue
                payment.leased_until = now + deps.policy.lease
                payment.next_action_at = payment.leased_until
                touched.append(payment)
                claimed.append(_Work(payment, action, step))
            uow.payments.save_all(touched)
            return claimed

        return run_in_transaction(deps.uow, work)

    def _act(self, claimed: Sequence[_Work]) -> dict[str, _Result]:
        results = {w.payment.id: _Result() for w in claimed}
        ledger_work = [w for w in claimed if w.step is not None]
        if ledger_work:
            for work, booked in zip(ledger_work, self._book(ledger_work), strict=True):
                results[work.payment.id].ledger = booked
        bank_work = [w for w in claimed if w.step is None]
        for work, result in zip(bank_work, self._pool.map(self._bank_call, bank_work), strict=True):
            results[work.payment.id] = result
        return results

    def _book(self, work: Sequence[_Work]) -> list[LedgerResult | None]:
        # One ledger call serves many payments: it joins the first one's trace, links the rest.
        traces = [w.payment.trace_context for w in work]
        with batch_span("payments.book", traces, payments=len(work)):
            return self._book_traced(work)

    def _book_traced(self, work: Sequence[_Work]) -> list[LedgerResult | None]:
        operations: list[LedgerOperation] = []
        for item in work:
            assert item.step is not None
            operations.append(operation_for(item.payment, item.step))
        try:
            booking = (LedgerStep.HOLD, LedgerStep.CREDIT)
            needs_accounts = [w.payment for w in work if w.step in booking]
            specs = {s.id: s for p in needs_accounts for s in accounts_for(p)}
            if specs:
                self.deps.ledger.ensure_accounts(list(specs.values()))
        except Exception as error:
            # Booking on an account that may not be open would be refused for good.
            _log.warning(
                "ledger accounts not ensured; bookings retried later",
                count=len(operations),
                error=repr(error),
            )
            return [None] * len(operations)
        return book(self.deps.ledger, operations)

    def _bank_call(self, work: _Work) -> _Result:
        with resumed_span(
            work.payment.trace_context,
            f"payments.bank.{work.action.name.lower()}",
            payment_id=work.payment.id,
        ):
            try:
                return self._bank_call_traced(work)
            except Exception:
                # This payment's call alone: the round's other payments go on.
                _log.exception(
                    "bank call failed unexpectedly; retried later", payment_id=work.payment.id
                )
                return _Result()

    def _bank_call_traced(self, work: _Work) -> _Result:
        bank = self.deps.bank
        payment = work.payment
        if work.action is Action.SUBMIT:
            return _Result(submit=bank.submit(instruction_for(payment)))
        lookup = bank.lookup(payment.id)
        if work.action is Action.RESOLVE and lookup.result is LookupResult.NOT_FOUND:
            # The bank has never seen it: sending again (same key) cannot pay twice.
            _log.info("bank has no record; submitting again", payment_id=payment.id)
            return _Result(submit=bank.submit(instruction_for(payment)), resent=True)
        return _Result(lookup=lookup)

    def _apply(self, claimed: Sequence[_Work], results: dict[str, _Result]) -> None:
        deps = self.deps

        def work(uow: PaymentsUnitOfWork) -> None:
            now = deps.clock.now()
            current = uow.payments.get_many((w.payment.id for w in claimed), lock=True)
            for item in claimed:
                payment = current.get(item.payment.id)
                if payment is None:
                    continue
                try:
                    apply_result(payment, item, results[payment.id], now)
                except Exception:
                    _log.exception(
                        "applying an answer failed; retried later", payment_id=payment.id
                    )
                    payment.retries += 1
                payment.leased_until = None
                schedule(payment, now, deps.policy)
            uow.payments.save_all(list(current.values()))

        run_in_transaction(deps.uow, work)

    # --- the bank's event feed ----------------------------------------------------------------

    def follow_bank_feed(self, stopping: Callable[[], bool] = lambda: False) -> int:
        """Read the next events of the bank's feed (long poll) and apply them; returns how many.

        When ``stopping()`` is true once the poll returns, its page is left to the
        next reader: the cursor moves only with the events' effects, so nothing is lost.
        """
        deps = self.deps
        with deps.uow() as uow:
            cursor = uow.payments.cursor(FEED)
        events, next_after = deps.bank.events(cursor, self._feed_wait)
        if not events or stopping():
            return 0
        bookings = apply_bank_events(deps, events, next_after)
        if bookings:
            # Booked here and now rather than by a worker's next round: one claim fewer.
            self._apply(bookings, self._act(bookings))
        return len(events)

    # --- threads ----------------------------------------------------------------------------------

    def start(self, loops: int = 1, feed: bool = True, reconcile_every: float = 0.0) -> None:
        for i in range(loops):
            self._spawn(f"payments-worker-{i}", self._work_loop)
        if feed:
            self._feed_thread = self._spawn("payments-bank-feed", self._feed_loop)
        if reconcile_every > 0:
            self._spawn("payments-reconciliation", lambda: self._reconcile_loop(reconcile_every))

    def reconcile_yesterday(self) -> str:
        """Reconcile yesterday's (complete) statement once; returns the run id.

        The run id is derived from the day, so every process and every tick
        after the first gets the same run back instead of a second run.
        """
        day = self.deps.clock.now().date() - timedelta(days=1)
        run_id = f"rec_daily_{day:%Y%m%d}"
        run_reconciliation(self.deps, run_id, day.isoformat())
        return run_id

    def _reconcile_loop(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self.reconcile_yesterday()
            except Exception:
                _log.exception("daily reconciliation failed; will try again")

    def _spawn(self, name: str, target: Callable[[], None]) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread

    def _work_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                done = self.process_due()
                failures = 0
            except Exception:
                failures += 1
                _log.exception("worker round failed; will try again")
                self._stop.wait(min(10.0, 0.2 * 2**failures))
                continue
            if done < self._batch:
                self._wake.wait(self._poll)
                self._wake.clear()

    def _feed_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            with self._feed_lock() as mine:
                if not mine:
                    # Another process follows the feed; be ready to take over.
                    self._stop.wait(5.0)
                    continue
                while not self._stop.is_set():
                    try:
                        self.follow_bank_feed(self._stop.is_set)
                        failures = 0
                    except BankUnavailable:
                        failures += 1
                        self._stop.wait(min(5.0, 0.1 * 2**failures))
                    except Exception:
                        failures += 1
                        _log.exception("bank feed round failed; will try again")
                        self._stop.wait(min(10.0, 0.2 * 2**failures))
                        break

    def stop(self) -> None:
        """Stop the loops; rounds can still be run by hand (tests, tools)."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            # The feed may be in its long poll (up to the feed wait): it has nothing
            # to finish, since what it brings back now is not applied, so stopping
            # does not wait for it. The other loops finish their round.
            thread.join(
                timeout=FEED_STOP_GRACE if thread is self._feed_thread else self._feed_wait + 5
            )
        self._threads.clear()
        self._feed_thread = None

    def close(self) -> None:
        self.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)


@contextlib.contextmanager
def _always() -> Iterator[bool]:
    yield True


def apply_result(payment: Payment, work: _Work, result: _Result, now: datetime) -> None:
    """Apply what the ledger or the bank answered to the payment as it is now."""
    if work.action is Action.PLACE_HOLD:
        apply_hold_result(payment, result.ledger, now)
        return
    if work.action is Action.LEDGER:
        assert work.step is not None
        _apply_booking(payment, work.step, result.ledger)
        return
    if result.resent:
        payment.bank_attempts += 1
    if result.submit is not None:
        outcome = result.submit
        if outcome.result is SubmitResult.ACCEPTED and outcome.payment is not None:
            _report(payment, outcome.payment.status, outcome.payment, now)
        elif outcome.result is SubmitResult.REFUSED:
            payment.retries = 0
            payment.bank_refused(outcome.code, now)
        else:
            payment.retries += 1
        return
    lookup = result.lookup
    if lookup is not None and lookup.result is LookupResult.FOUND and lookup.payment is not None:
        _report(payment, lookup.payment.status, lookup.payment, now)
    else:
        payment.retries += 1


def _report(payment: Payment, status: BankStatus, view: BankPaymentView, now: datetime) -> None:
    before = payment.transition_count
    consistent = payment.bank_reported(
        status,
        now,
        bank_payment_id=view.bank_payment_id,
        failure_code=view.failure_code,
        settled_at=view.settled_at,
        returned_at=view.returned_at,
    )
    if not consistent:
        _log.error(
            "bank report contradicts the payment",
            payment_id=payment.id,
            state=payment.state.name,
            bank_status=status.value,
        )
    if payment.transition_count != before or status is BankStatus.PENDING:
        payment.retries = 0


def _apply_booking(payment: Payment, step: LedgerStep, result: LedgerResult | None) -> None:
    if payment.pending_ledger_step() is not step:
        return  # already booked (or no longer needed)
    if result is None:
        payment.retries += 1
        return
    if result.ok or (step is LedgerStep.VOID and result.reason in _VOID_DONE):
        payment.retries = 0
        payment.ledger_step_done(step)
        return
    payment.retries += 1
    payment.ledger_error = f"{step.suffix}: {result.reason}"
    _log.error(
        "ledger refused a booking; it will be retried",
        payment_id=payment.id,
        step=step.suffix,
        reason=result.reason,
        message=result.message,
    )


def apply_bank_events(deps: Deps, events: Sequence[BankEvent], next_after: int) -> list[_Work]:
    """Apply a page of the bank's feed and move the cursor, in one transaction.

    Payments that now have a ledger booking to make are leased to the caller,
    which books them at once; returns them.
    """

    def work(uow: PaymentsUnitOfWork) -> list[_Work]:
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
            _report(payment, event.status, event.payment, now)
            if (payment.transition_count, payment.bank_payment_id) != before:
                changed[payment.id] = payment
        bookings = []
        for payment in changed.values():
            schedule(payment, now, deps.policy)
            step = payment.pending_ledger_step()
            free = payment.leased_until is None or payment.leased_until <= now
            if step is not None and free:
                payment.leased_until = now + deps.policy.lease
                payment.next_action_at = payment.leased_until
                bookings.append(_Work(payment, Action.LEDGER, step))
        uow.payments.save_all(list(changed.values()))
        uow.payments.set_cursor(FEED, next_after)
        return bookings

    return run_in_transaction(deps.uow, work)
