"""Payments' background work, as workers the chassis starts and stops.

- the rounds (``PaymentRounds``): loops running ``service_layer.rounds`` over
  due payments (bank submissions and status resolution, ledger follow-ups),
  the bank's event feed (one process at a time), the daily reconciliation;
- the KYC projection, following identity's events;
- the payments-by-state gauges (sampled by one process of a service) and the
  house accounts' fill (read by every process: each checks new payments).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass

import structlog
from chassis.background import Periodic, Worker, seconds_left
from chassis.db.locks import try_advisory_lock
from chassis.events.subscriber import EventSubscriber
from chassis.metrics import Sampler
from chassis.multiprocess import is_first_process
from chassis.service import Background

from payments.adapters.metrics import states_sampler
from payments.bootstrap import Payments
from payments.config import PaymentsSettings
from payments.domain.states import PaymentState
from payments.entrypoints.kyc_subscriber import start_kyc_subscriber
from payments.service_layer import rounds
from payments.service_layer.ports import BankUnavailable
from payments.service_layer.use_cases import Deps, rescreen_open_payments

_log = structlog.get_logger("payments.worker")

# One process at a time follows the bank's feed (the name every version has held).
BANK_FEED_LOCK = "astra-payments-bank-feed"
# How long stopping waits for the feed thread, which may be inside a long poll.
FEED_STOP_GRACE = 1.0
# How long a process that does not hold the feed waits before trying to take it over.
FEED_TAKEOVER_SECONDS = 5.0


@dataclass(frozen=True)
class RoundsOptions:
    """How many rounds run, how large and how often (``PAYMENTS_WORKER_*`` and friends)."""

    loops: int = 2
    batch_size: int = 200
    bank_call_threads: int = 16
    poll_seconds: float = 0.5
    feed: bool = True
    feed_wait_seconds: float = 10.0
    reconcile_every_seconds: float = 0.0

    @classmethod
    def of(cls, settings: PaymentsSettings) -> RoundsOptions:
        return cls(
            loops=settings.worker_loops,
            batch_size=settings.worker_batch_size,
            bank_call_threads=settings.worker_threads,
            poll_seconds=settings.worker_poll_seconds,
            feed_wait_seconds=settings.bank_feed_wait_seconds,
            reconcile_every_seconds=settings.reconciliation_interval_seconds,
        )


def _backoff(failures: int, *, first: float = 0.2, most: float = 10.0) -> float:
    """The pause after ``failures`` failed rounds in a row: doubling with each, up to ``most``."""
    return min(most, first * float(2**failures))


@contextlib.contextmanager
def _always() -> Iterator[bool]:
    yield True


class DailyReconciliation(Periodic):
    """Every ``PAYMENTS_RECONCILIATION_INTERVAL_SECONDS``: yesterday's statement reconciled."""

    def __init__(self, deps: Deps, every: float) -> None:
        super().__init__("payments-reconciliation", self.tick, every)
        self._deps = deps

    def tick(self) -> None:
        rounds.reconcile_yesterday(self._deps)

    def failed(self) -> None:
        _log.exception("daily reconciliation failed; will try again")


class PaymentRounds:
    """The rounds of ``service_layer.rounds`` on threads of their own, until stopped.

    ``loops`` threads each run rounds over due payments back to back while
    there is a full batch to claim, else wait for a wake-up (``deps.wake``,
    after a creation or a change due now) or ``poll_seconds``; a round's bank
    calls go to a pool of ``bank_call_threads``. One thread follows the bank's
    feed while it holds ``feed_lock`` (another process may), and the daily
    reconciliation runs every ``reconcile_every_seconds`` (0: never).
    """

    name = "payment-rounds"

    def __init__(
        self,
        deps: Deps,
        options: RoundsOptions,
        *,
        feed_lock: Callable[[], AbstractContextManager[bool]] = _always,
    ) -> None:
        self._deps = deps
        self._options = options
        self._feed_lock = feed_lock
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._loops: list[threading.Thread] = []
        self._feed: threading.Thread | None = None
        self._reconciliation: DailyReconciliation | None = None

    @classmethod
    def of(cls, app: Payments) -> PaymentRounds:
        """The service's rounds, as its settings say; the feed under the database's lock."""
        engine = app.engine
        return cls(
            app.deps,
            RoundsOptions.of(app.settings),
            feed_lock=lambda: try_advisory_lock(engine, BANK_FEED_LOCK),
        )

    def wake(self) -> None:
        """There is work due now: a loop waiting for its next poll starts a round at once."""
        self._wake.set()

    def start(self) -> None:
        options = self._options
        # From now on, what this process creates or changes wakes its loops.
        self._deps.wake = self.wake
        self._pool = ThreadPoolExecutor(
            max_workers=options.bank_call_threads, thread_name_prefix="bank-call"
        )
        for i in range(options.loops):
            self._loops.append(self._spawn(f"payments-worker-{i}", self._work_loop))
        if options.feed:
            self._feed = self._spawn("payments-bank-feed", self._feed_loop)
        if options.reconcile_every_seconds > 0:
            self._reconciliation = DailyReconciliation(
                self._deps, options.reconcile_every_seconds
            ).start()

    def stop(self, timeout: float) -> None:
        """Stop every loop, within ``timeout``; rounds can still be run by hand afterwards.

        A loop finishes the round it is in. The feed may be in its long poll (up
        to the feed wait): it has nothing to finish, since what it brings back now
        is not applied, so stopping does not wait for it beyond ``FEED_STOP_GRACE``.
        """
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self._wake.set()
        if self._reconciliation is not None:
            self._reconciliation.stop(0.0)  # asked now, waited for below
        round_bound = self._options.feed_wait_seconds + 5
        for thread in self._loops:
            thread.join(timeout=min(round_bound, seconds_left(deadline)))
        if self._feed is not None:
            self._feed.join(timeout=min(FEED_STOP_GRACE, seconds_left(deadline)))
        if self._reconciliation is not None:
            self._reconciliation.stop(min(round_bound, seconds_left(deadline)))
        if self._pool is not None:
            # Bank calls of a loop still in its round are not waited for: unanswered, they
            # leave their payments SUBMITTING, and the next round asks the bank for them.
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _spawn(self, name: str, target: Callable[[], None]) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        return thread

    def _work_loop(self) -> None:
        assert self._pool is not None
        options, stopping, call_map = self._options, self._stopping, self._pool.map
        failures = 0
        while not stopping.is_set():
            try:
                done = rounds.process_due(
                    self._deps, batch_size=options.batch_size, call_map=call_map
                )
                failures = 0
            except Exception:
                failures += 1
                _log.exception("worker round failed; will try again")
                stopping.wait(_backoff(failures))
                continue
            if done < options.batch_size:
                self._wake.wait(options.poll_seconds)
                self._wake.clear()

    def _feed_loop(self) -> None:
        stopping, wait = self._stopping, self._options.feed_wait_seconds
        failures = 0
        while not stopping.is_set():
            with self._feed_lock() as mine:
                if not mine:
                    # Another process follows the feed; be ready to take over.
                    stopping.wait(FEED_TAKEOVER_SECONDS)
                    continue
                while not stopping.is_set():
                    try:
                        rounds.follow_bank_feed(
                            self._deps, wait_seconds=wait, stopping=stopping.is_set
                        )
                        failures = 0
                    except BankUnavailable:
                        failures += 1
                        stopping.wait(_backoff(failures, first=0.1, most=5.0))
                    except Exception:
                        failures += 1
                        _log.exception("bank feed round failed; will try again")
                        stopping.wait(_backoff(failures))
                        break


class KycProjection:
    """Identity's customer events into payments' KYC projection (``kyc_subscriber``)."""

    name = "kyc-subscriber"

    def __init__(self, app: Payments) -> None:
        self._app = app
        self._subscriber: EventSubscriber | None = None

    def start(self) -> None:
        # Not started (Pub/Sub away, say): the gate asks identity instead; logged there.
        self._subscriber = start_kyc_subscriber(self._app, self._app.settings)

    def stop(self, timeout: float) -> None:
        if self._subscriber is not None:
            self._subscriber.stop(timeout)


def states_sampler_of(app: Payments) -> Sampler:
    """The payments-by-state and stuck-payments gauges, read from the database."""

    def count() -> dict[PaymentState, int]:
        with app.uow() as uow:
            return uow.payments.count_by_state()

    def stuck() -> int:
        with app.uow() as uow:
            return uow.payments.count_stuck(app.deps.policy.stuck_after)

    return states_sampler(count, stuck)


def capacity_watch_of(app: Payments) -> Sampler:
    """Reads the house accounts' totals now and then (see ``CapacityWatch``)."""

    def read() -> None:
        app.deps.capacity.refresh(app.deps.ledger)

    return Sampler("payments-house-accounts", read, app.settings.house_account_check_seconds)


def rescreen_all(deps: Deps) -> int:
    """Every open payment screened against the loaded list, batch by batch; how many changed."""
    changed, after = 0, ""
    while True:
        batch = rescreen_open_payments(deps, after)
        changed += batch.changed
        if batch.next_after is None:
            return changed
        after = batch.next_after


def sanctions_rescreen_of(app: Payments) -> Periodic:
    """Once at start, the open payments screened against the list loaded (if it is a new
    version for them); tried again every half minute until it has run once."""
    done = threading.Event()

    def tick() -> None:
        if not done.is_set():
            rescreen_all(app.deps)
            done.set()

    return Periodic("payments-sanctions-rescreen", tick, 30.0, at_start=True)


def background(app: Payments, settings: PaymentsSettings) -> Background:
    """What runs beside the server; the rounds and the KYC projection with
    ``PAYMENTS_WORKERS_ENABLED`` (always under ``astra-payments workers``)."""
    workers: list[Worker] = [capacity_watch_of(app)]
    if is_first_process():
        workers.append(states_sampler_of(app))
    if settings.workers_enabled:
        workers.append(PaymentRounds.of(app))
        if app.deps.policy.sanctions is not None:
            workers.append(sanctions_rescreen_of(app))
        if settings.kyc_subscriber_enabled:
            workers.append(KycProjection(app))
    return Background(before_server=workers)
