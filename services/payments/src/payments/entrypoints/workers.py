"""Payments' background work, as workers the chassis starts and stops.

- the rounds: bank submissions and status resolution, ledger follow-ups, the
  bank's event feed (one process at a time), the daily reconciliation
  (``Orchestrator``);
- the KYC projection, following identity's events;
- the payments-by-state gauges (sampled by one process of a service) and the
  house accounts' fill (read by every process: each checks new payments).
"""

from __future__ import annotations

from chassis.background import Worker
from chassis.events.subscriber import EventSubscriber
from chassis.metrics import Sampler
from chassis.multiprocess import is_first_process
from chassis.service import Background

from payments.adapters.metrics import states_sampler
from payments.bootstrap import Payments
from payments.config import PaymentsSettings
from payments.domain.states import PaymentState
from payments.entrypoints.kyc_subscriber import start_kyc_subscriber


class PaymentRounds:
    """The orchestrator's loops: workers claiming due payments, the bank feed, reconciliation."""

    name = "payment-rounds"

    def __init__(self, app: Payments) -> None:
        self._app = app

    def start(self) -> None:
        settings = self._app.settings
        self._app.orchestrator.start(
            loops=settings.worker_loops,
            feed=True,
            reconcile_every=settings.reconciliation_interval_seconds,
        )

    def stop(self, timeout: float) -> None:
        self._app.orchestrator.stop()


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


def background(app: Payments, settings: PaymentsSettings) -> Background:
    """What runs beside the server; the rounds and the KYC projection with
    ``PAYMENTS_WORKERS_ENABLED`` (always under ``astra-payments workers``)."""
    workers: list[Worker] = [capacity_watch_of(app)]
    if is_first_process():
        workers.append(states_sampler_of(app))
    if settings.workers_enabled:
        workers.append(PaymentRounds(app))
        if settings.kyc_subscriber_enabled:
            workers.append(KycProjection(app))
    return Background(before_server=workers)
