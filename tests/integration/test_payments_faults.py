"""Payments against a misbehaving bank: each fault in its own test.

After each storm: no payment was paid twice at the bank, every payment reached
a terminal state, the customer's ledger balance is exactly what settled, and a
reconciliation finds the ledger and the bank's statement in agreement.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import cast

import grpc
from astra.payments.v1 import payments_pb2 as pb
from payments.adapters.bank_gateway import HttpBankGateway
from payments.domain.bank import BankEvent, BankPaymentView
from payments.domain.model import BankStatus
from payments.entrypoints.workers import PaymentRounds, RoundsOptions
from payments.service_layer import rounds
from payments.service_layer.ports import BankGateway
from payments.service_layer.rounds import FEED

from tests.identity_fixtures import IdentityServer
from tests.payments_fixtures import (
    ForgingProxy,
    SandboxBank,
    Suite,
    make_suite,
)

PAYOUTS = 15
AMOUNT = 1_000
FUNDING = 100_000


def storm(suite: Suite, *, collections: int = 3) -> tuple[str, list[str]]:
    """A funded customer, then payouts and collections created while the bank misbehaves."""
    customer = suite.customer()
    ids = []
    with ThreadPoolExecutor(max_workers=5) as pool:
        futures = [pool.submit(suite.payout, customer, AMOUNT) for _ in range(PAYOUTS)]
        futures += [pool.submit(suite.collection, customer, AMOUNT) for _ in range(collections)]
        ids = [f.result().id for f in futures]
    return customer, ids


def check_aftermath(suite: Suite, customer: str, ids: list[str], funded: int) -> None:
    suite.bank.clear_faults()
    finals = [suite.wait_for(pid, timeout=120) for pid in ids]
    assert {p.state for p in finals} == {pb.PAYMENT_STATE_SETTLED}, [
        (p.id, pb.PaymentState.Name(p.state), p.reason) for p in finals
    ]
    bank_payments = suite.bank.payments()
    per_reference = Counter(p["reference"] for p in bank_payments)
    assert max(per_reference.values()) == 1, "a payment was paid twice at the bank"
    assert set(ids) <= set(per_reference)
    by_reference = {p["reference"]: p for p in bank_payments}
    assert all(by_reference[pid]["status"] == "settled" for pid in ids)
    paid_out = sum(p.amount + p.fee for p in finals if p.kind == pb.PAYMENT_KIND_PAYOUT)
    collected = sum(p.amount for p in finals if p.kind == pb.PAYMENT_KIND_COLLECTION)
    assert suite.customer_balance(customer) == funded - paid_out + collected
    run = reconcile_once_the_bank_answers(suite)
    assert list(run.breaks) == []
    assert run.matched_count == run.statement_line_count


def reconcile_once_the_bank_answers(suite: Suite) -> pb.ReconciliationRun:
    """Reconcile; refused (UNAVAILABLE) while the bank's circuit breaker is still open.

    Calls sent while the faults were on can time out after they are cleared and
    open the breaker for a moment (seen: 1 run in 6 of this module), so the run
    is asked for again, as a caller would, until the breaker lets it through.
    """
    deadline = time.monotonic() + 15
    while True:
        try:
            return suite.reconcile()
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def fund(suite: Suite) -> tuple[str, int]:
    customer = suite.customer()
    suite.fund(customer, FUNDING)
    return customer, FUNDING


def test_five_hundreds_and_timeouts(suite: Suite) -> None:
    customer, funded = fund(suite)
    suite.bank.set_faults(error_rate=0.3, timeout_rate=0.1, hang_seconds=2)
    ids = []
    with ThreadPoolExecutor(max_workers=5) as pool:
        ids = [p.id for p in pool.map(lambda _: suite.payout(customer, AMOUNT), range(PAYOUTS))]
    collection = suite.collection(customer, AMOUNT)
    # Let the storm meet the submissions before it is cleared.
    deadline = time.monotonic() + 60
    while suite.bank.stats()["faults_injected"].get("error", 0) < 5:
        assert time.monotonic() < deadline, "the bank injected no errors"
        time.sleep(0.1)
    check_aftermath(suite, customer, [*ids, collection.id], funded)
    injected = suite.bank.stats()["faults_injected"]
    assert injected["error"] >= 5


def test_lost_responses(suite: Suite) -> None:
    customer, funded = fund(suite)
    suite.bank.set_faults(lost_response_rate=0.5, hang_seconds=2)
    ids = []
    with ThreadPoolExecutor(max_workers=5) as pool:
        ids = [p.id for p in pool.map(lambda _: suite.payout(customer, AMOUNT), range(PAYOUTS))]
    # Wait until the bank has acted on every payout while its answers were lost.
    deadline = time.monotonic() + 60
    while len({p["reference"] for p in suite.bank.payments()} & set(ids)) < len(ids):
        assert time.monotonic() < deadline, "the bank never received some payouts"
        time.sleep(0.1)
    lost = suite.bank.stats()["faults_injected"].get("lost_response", 0)
    check_aftermath(suite, customer, ids, funded)
    assert lost > 0
    # The bank saw retries with the same key (replayed), never a second payment.
    assert suite.bank.stats()["counters"]["submissions_created"] == PAYOUTS + 1


def test_rate_limit_storm(suite: Suite) -> None:
    customer, funded = fund(suite)
    suite.bank.set_faults(rate_limit_rate=0.6, retry_after_seconds=1)
    ids = []
    with ThreadPoolExecutor(max_workers=5) as pool:
        ids = [p.id for p in pool.map(lambda _: suite.payout(customer, AMOUNT), range(PAYOUTS))]
    deadline = time.monotonic() + 60
    while suite.bank.stats()["faults_injected"].get("rate_limited", 0) < 10:
        assert time.monotonic() < deadline, "the bank limited no requests"
        time.sleep(0.1)
    check_aftermath(suite, customer, ids, funded)
    # A 429 is the bank being up and busy: it never opens the breaker.
    gateway = suite.app.deps.bank
    assert isinstance(gateway, HttpBankGateway)
    assert gateway.breaker.current_state == "closed"


def test_bank_down_for_a_while_opens_the_breaker_which_recovers(suite: Suite) -> None:
    customer, funded = fund(suite)
    gateway = suite.app.deps.bank
    assert isinstance(gateway, HttpBankGateway)
    suite.bank.kill()
    ids = [suite.payout(customer, AMOUNT).id for _ in range(PAYOUTS)]
    deadline = time.monotonic() + 60
    while gateway.breaker.current_state != "open":
        assert time.monotonic() < deadline, "the breaker never opened"
        time.sleep(0.05)
    # While the bank is down, nothing is paid and everything waits in a resolvable state.
    waiting = {suite.get(pid).state for pid in ids}
    assert waiting <= {pb.PAYMENT_STATE_FUNDS_HELD, pb.PAYMENT_STATE_SUBMITTING}
    time.sleep(1.5)
    suite.bank.start()  # the same port and books
    check_aftermath(suite, customer, ids, funded)
    deadline = time.monotonic() + 30
    while gateway.breaker.current_state != "closed":
        assert time.monotonic() < deadline, "the breaker never closed again"
        time.sleep(0.05)


def test_stopping_does_not_wait_out_the_feeds_long_poll_nor_apply_what_it_brings(
    suite: Suite,
) -> None:
    polling, release, answered, loop_left = (threading.Event() for _ in range(4))
    # An event for a payment nobody knows: applying it would only move the cursor.
    late_page = [
        BankEvent(
            7,
            BankStatus.SETTLED,
            BankPaymentView("bpm_late", "pay_nobody", BankStatus.SETTLED, 100, "EUR"),
        )
    ]

    class HeldFeed:
        """The bank's event feed, held inside its long poll until the test releases it."""

        def events(self, after: int, wait: float) -> tuple[list[BankEvent], int]:
            polling.set()
            release.wait(30)
            answered.set()
            return late_page, 7

    @contextlib.contextmanager
    def feed_lock() -> Iterator[bool]:
        try:
            yield True
        finally:
            loop_left.set()

    def cursor() -> int:
        with suite.app.deps.uow() as uow:
            return uow.payments.cursor(FEED)

    start = cursor()
    bank = cast(BankGateway, HeldFeed())  # only the feed is called
    deps = replace(suite.app.deps, bank=bank)
    feed_only = RoundsOptions(loops=0, feed=True, feed_wait_seconds=30)
    payment_rounds = PaymentRounds(deps, feed_only, feed_lock=feed_lock)
    payment_rounds.start()
    assert polling.wait(10)
    payment_rounds.stop(timeout=10)
    assert not answered.is_set()  # stop() came back with the poll still out

    release.set()
    assert loop_left.wait(10)
    assert cursor() == start  # the page that came back after stop() was left alone

    # The next reader gets that page and applies it.
    assert rounds.follow_bank_feed(deps, wait_seconds=30) == 1
    assert cursor() == 7


def test_a_forged_settled_on_the_wire_never_pays_a_payout(
    payments_db_url: str,
    sandbox_bank: SandboxBank,
    ledger_target: str,
    identity_server: IdentityServer,
) -> None:
    """The bank fails a payout; someone on the wire tells payments it settled. Payments must
    not believe it (the answer is not signed as sent), and learns the truth once the wire is
    clean again."""

    def settled(body: bytes) -> bytes:
        return body.replace(b'"failed"', b'"settled"').replace(
            b'"failure_code":"insufficient_funds"', b'"failure_code":null'
        )

    with ForgingProxy(sandbox_bank.url, settled) as proxy:
        proxy.forging = False
        suite, close = make_suite(
            payments_db_url, sandbox_bank, ledger_target, identity_server, bank_url=proxy.url
        )
        try:
            customer, funded = fund(suite)
            proxy.forging = True
            payout = suite.payout(customer, AMOUNT, account="DE00000000000000009903")
            # The forged feed page reached payments, and payments asked again: not taken.
            deadline = time.monotonic() + 30
            while proxy.forged["/v1/events"] < 2:
                assert time.monotonic() < deadline, "no forged feed page reached payments"
                time.sleep(0.05)
            assert suite.get(payout.id).state != pb.PAYMENT_STATE_SETTLED
            proxy.forging = False
            final = suite.wait_for(payout.id)
            balance = suite.customer_balance(customer)
        finally:
            close()
    # SETTLED is final: had payments believed any forged answer, it would have stayed there.
    assert (final.state, final.reason) == (pb.PAYMENT_STATE_FAILED, "BANK_INSUFFICIENT_FUNDS")
    assert balance == funded
    assert [p["status"] for p in sandbox_bank.payments() if p["reference"] == payout.id] == [
        "failed"
    ]
