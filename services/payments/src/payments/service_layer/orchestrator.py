"""The workers that drive payments forward: bank submissions, status resolution, ledger follow-ups.

Work is found in the payments table itself: every payment with something left
to do has ``next_action_at`` set (see ``payments.domain.progress``, which
decides what each step and each answer does to a payment). A round:

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
from datetime import timedelta

import structlog
from chassis.kernel.uow import run_in_transaction
from chassis.tracing import batch_span, resumed_span

from payments.domain import progress
from payments.domain.bank import BankEvent, LookupResult, instruction_for
from payments.domain.ledger_plan import LedgerOperation, LedgerResult, accounts_for, operation_for
from payments.domain.model import Action, LedgerStep, Payment
from payments.domain.progress import Answer, Work
from payments.service_layer.ports import BankUnavailable
from payments.service_layer.unit_of_work import PaymentsUnitOfWork
from payments.service_layer.use_cases import (
    Deps,
    book,
    notice,
    run_reconciliation,
    schedule,
)

_log = structlog.get_logger("payments.worker")

FEED = "bank-events"
# How long stopping waits for the feed thread, which may be inside a long poll.
FEED_STOP_GRACE = 1.0


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

    def _claim(self) -> list[Work]:
        deps = self.deps

        def work(uow: PaymentsUnitOfWork) -> list[Work]:
            now = deps.clock.now()
            due = uow.payments.claim_due(now, self._batch)
            claimed = [progress.claim(payment, now, deps.policy) for payment in due]
            uow.payments.save_all(due)
            return [work for work in claimed if work is not None]

        return run_in_transaction(deps.uow, work)

    def _act(self, claimed: Sequence[Work]) -> dict[str, Answer]:
        results = {w.payment.id: Answer() for w in claimed}
        ledger_work = [w for w in claimed if w.step is not None]
        if ledger_work:
            for work, booked in zip(ledger_work, self._book(ledger_work), strict=True):
                results[work.payment.id].ledger = booked
        bank_work = [w for w in claimed if w.step is None]
        for work, result in zip(bank_work, self._pool.map(self._bank_call, bank_work), strict=True):
            results[work.payment.id] = result
        return results

    def _book(self, work: Sequence[Work]) -> list[LedgerResult | None]:
        # One ledger call serves many payments: it joins the first one's trace, links the rest.
        traces = [w.payment.trace_context for w in work]
        with batch_span("payments.book", traces, payments=len(work)):
            return self._book_traced(work)

    def _book_traced(self, work: Sequence[Work]) -> list[LedgerResult | None]:
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

    def _bank_call(self, work: Work) -> Answer:
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
                return Answer()

    def _bank_call_traced(self, work: Work) -> Answer:
        bank = self.deps.bank
        payment = work.payment
        if work.action is Action.SUBMIT:
            return Answer(submit=bank.submit(instruction_for(payment)))
        lookup = bank.lookup(payment.id)
        if work.action is Action.RESOLVE and lookup.result is LookupResult.NOT_FOUND:
            # The bank has never seen it: sending again (same key) cannot pay twice.
            _log.info("bank has no record; submitting again", payment_id=payment.id)
            return Answer(submit=bank.submit(instruction_for(payment)), resent=True)
        return Answer(lookup=lookup)

    def _apply(self, claimed: Sequence[Work], results: dict[str, Answer]) -> None:
        deps = self.deps

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
