"""Payments' worker loops (``entrypoints.workers.PaymentRounds``) on the in-memory adapters.

The rounds themselves are tested without threads (test_payments_use_cases.py);
these tests are about the loops around them: what wakes them, and that
stopping them is bounded. Each waits for real threads, with generous bounds
that only a loop that never acts (or never returns) would exceed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from astra_testkit.waiting import wait_until
from payments.adapters.memory import MemoryPayments
from payments.domain.bank import BankInstruction, SubmitOutcome
from payments.domain.fees import FeeSchedule
from payments.domain.model import BankAccount, PaymentRequest
from payments.domain.policy import Policy
from payments.domain.states import PaymentKind, PaymentState
from payments.entrypoints.workers import PaymentRounds, RoundsOptions
from payments.service_layer.creation import create_payment
from payments.service_layer.use_cases import Deps

HOUR = 3600.0


@dataclass
class Running:
    fakes: MemoryPayments
    deps: Deps

    def payout(self, payment_id: str) -> None:
        customer = "cus_ada"
        if customer not in self.fakes.identity.customers:
            self.fakes.identity.add(customer, since=self.fakes.clock.now() - timedelta(days=400))
            self.fakes.ledger.deposit(customer, "EUR", 100_000, "tr_fund")
        request = PaymentRequest(
            payment_id=payment_id,
            kind=PaymentKind.PAYOUT,
            customer_id=customer,
            amount=1_000,
            currency="EUR",
            counterparty=BankAccount("DE89370400440532013000", "Bob"),
        )
        create_payment(self.deps, request, "destination")

    def state(self, payment_id: str) -> PaymentState:
        with self.deps.uow() as uow:
            payment = uow.payments.get(payment_id)
        assert payment is not None
        return payment.state


@pytest.fixture
def running() -> Running:
    fakes = MemoryPayments()
    return Running(fakes, fakes.deps(Policy(fees=FeeSchedule(fixed={"EUR": 100}))))


@pytest.fixture
def rounds_without_polling(running: Running) -> Iterator[PaymentRounds]:
    """One loop that polls once an hour: only a wake-up makes it act sooner."""
    rounds = PaymentRounds(running.deps, RoundsOptions(loops=1, poll_seconds=HOUR, feed=False))
    rounds.start()
    yield rounds
    rounds.stop(timeout=10)


def test_a_new_payout_wakes_the_loops_which_send_it_to_the_bank(
    running: Running, rounds_without_polling: PaymentRounds
) -> None:
    running.payout("pay_first")
    wait_until(lambda: running.state("pay_first") is PaymentState.SUBMITTED, 30, "sent")
    # Once more, now that the loop waits for its next poll (an hour away).
    running.payout("pay_second")
    wait_until(lambda: running.state("pay_second") is PaymentState.SUBMITTED, 30, "sent")
    assert running.fakes.bank.submissions == ["pay_first", "pay_second"]


def test_stopping_returns_within_its_timeout_while_a_round_hangs_on_the_bank(
    running: Running,
) -> None:
    calling, release = threading.Event(), threading.Event()
    real_submit = running.fakes.bank.submit

    def hanging_submit(instruction: BankInstruction) -> SubmitOutcome:
        calling.set()
        release.wait(HOUR)
        return real_submit(instruction)

    running.fakes.bank.submit = hanging_submit  # type: ignore[method-assign]
    # A round may take as long as the feed's wait: an hour here.
    options = RoundsOptions(loops=1, poll_seconds=0.05, feed=False, feed_wait_seconds=HOUR)
    rounds = PaymentRounds(running.deps, options)
    rounds.start()
    try:
        running.payout("pay_hanging")
        assert calling.wait(30)
        stopper = threading.Thread(target=rounds.stop, args=(0.2,), daemon=True)
        stopper.start()
        stopper.join(30)
        assert not stopper.is_alive()  # stop returned...
        assert not release.is_set()  # ...with the bank call still hanging
        assert running.state("pay_hanging") is PaymentState.SUBMITTING
    finally:
        release.set()
    # The round that hung finishes on its own and records the bank's answer.
    wait_until(lambda: running.state("pay_hanging") is PaymentState.SUBMITTED, 30, "recorded")
