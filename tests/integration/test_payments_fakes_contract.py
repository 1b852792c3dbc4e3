"""The in-memory adapters keep the promises of the real ones: the same checks run on both.

Payments' unit of work and repository on PostgreSQL and in memory; the ledger
port over gRPC to the real ledger and in memory; the bank gateway over HTTP to
the sandbox bank and in memory. What the fast tier (tests/unit/
test_payments_use_cases.py) and simulations learn on the fakes holds for the
service only as far as these agree.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from chassis.db.data_keys import DataKeys
from chassis.db.engine import create_db_engine
from chassis.events.writer import OutboxWriter
from chassis.kernel.audit import Requester
from chassis.kernel.money import MAX_AMOUNT
from chassis.pii import Envelope
from chassis.retry import RetryPolicy
from payments.adapters import tables
from payments.adapters.bank_gateway import HttpBankGateway, new_breaker
from payments.adapters.events import to_outbox_message
from payments.adapters.ledger_client import GrpcLedger
from payments.adapters.memory import (
    ManualClock,
    MemoryBank,
    MemoryDatabase,
    MemoryLedger,
    MemoryUnitOfWork,
)
from payments.adapters.unit_of_work import SqlPaymentsUnitOfWork
from payments.bootstrap import migrate
from payments.domain.bank import BankInstruction, LookupResult, SubmitResult
from payments.domain.customers import CustomerErasure, CustomerKyc
from payments.domain.ledger_plan import (
    AccountSpec,
    LedgerLeg,
    LedgerOperation,
    OpKind,
    clearing_account_id,
    returns_receivable_account_id,
)
from payments.domain.model import BankAccount, LedgerStep, Payment, PaymentRequest
from payments.domain.monitoring import Alert, AlertResolution, AlertRule, AlertState, Finding
from payments.domain.reconciliation import ReconciliationReport
from payments.domain.states import PaymentKind, PaymentState
from payments.service_layer.ports import (
    BankGateway,
    LedgerPort,
    LedgerRequestRefused,
    StaleWrite,
)
from payments.service_layer.unit_of_work import PaymentsUnitOfWork
from sqlalchemy import text

from tests.ledger_fixtures import authorized_channel
from tests.payments_fixtures import PAYMENTS_TEST_KEK, SandboxBank

S = PaymentState
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
UowFactory = Callable[[], PaymentsUnitOfWork]


# --- payments' unit of work and repository -------------------------------------------------


@pytest.fixture(params=["postgresql", "memory"])
def new_uow(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[UowFactory]:
    if request.param == "memory":
        database = MemoryDatabase()
        yield lambda: MemoryUnitOfWork(database)
        return
    if request.param == "sqlite":  # ``make run``'s database, asked for by a test's parameters
        url = f"sqlite:///{tmp_path / 'payments.db'}"
        migrate(url)
    else:
        url = request.getfixturevalue("payments_db_url")
    engine = create_db_engine(url)
    write_events = OutboxWriter(tables.outbox, "payments").events_writer(to_outbox_message)
    keys = DataKeys(tables.data_keys, Envelope([PAYMENTS_TEST_KEK]))
    yield lambda: SqlPaymentsUnitOfWork(engine, keys, write_events)
    engine.dispose()


def payment(
    payment_id: str,
    customer_id: str = "cus_a",
    amount: int = 100,
    kind: PaymentKind = PaymentKind.PAYOUT,
    currency: str = "EUR",
    now: datetime = NOW,
    original: str = "",
) -> Payment:
    request = PaymentRequest(
        payment_id, kind, customer_id, amount, currency, BankAccount("DE00"), "", original
    )
    return Payment.create(request, fee=0, ledger_account_id=f"acct_{customer_id}", now=now)


def raised(call: Callable[[], object]) -> Exception:
    try:
        call()
    except Exception as error:
        return error
    raise AssertionError("it did not fail")


def add(new_uow: UowFactory, *payments: Payment) -> None:
    with new_uow() as uow:
        uow.payments.add_all(list(payments))
        uow.commit()


def test_counterparties_are_sealed_at_rest_and_erased_with_their_customer(
    new_uow: UowFactory, request: pytest.FixtureRequest
) -> None:
    iban, name = "DE44500105175407324931", "Ada Lovelace-5c2"
    mine = dataclasses.replace(
        payment("pay_pii", customer_id="cus_pii"), counterparty=BankAccount(iban, name)
    )
    add(new_uow, mine, payment("pay_other", customer_id="cus_b"))
    with new_uow() as uow:
        stored = uow.payments.get("pay_pii", history=True)
        assert stored is not None
        assert stored.counterparty == BankAccount(iban, name)
    if request.node.callspec.params["new_uow"] == "postgresql":
        engine = create_db_engine(request.getfixturevalue("payments_db_url"))
        with engine.connect() as connection:
            raw = b"".join(
                v if isinstance(v, bytes) else str(v).encode()
                for row in connection.execute(text("SELECT * FROM payments"))
                for v in row
            )
        engine.dispose()
        assert b"pay_pii" in raw
        assert iban.encode() not in raw
        assert iban[-8:].encode() not in raw
        assert name.encode() not in raw

    outcomes = []
    for _ in range(2):  # a second erasure finds nothing left
        with new_uow() as uow:
            outcomes.append(uow.payments.erase_customer(CustomerErasure("cus_pii", NOW)))
            uow.commit()
    assert outcomes == [(1, True), (0, False)]
    with new_uow() as uow:
        erased = uow.payments.get("pay_pii", history=True)
        other = uow.payments.get("pay_other")
    assert erased is not None
    assert other is not None
    assert erased.counterparty == BankAccount("", "")
    assert (erased.amount, erased.state, erased.history) == (
        stored.amount,
        stored.state,
        stored.history,
    )
    assert other.counterparty == BankAccount("DE00")


def test_a_transaction_sees_its_writes_and_leaves_nothing_without_a_commit(
    new_uow: UowFactory,
) -> None:
    def crash() -> None:
        with new_uow() as uow:
            uow.payments.add(payment("pay_1"))
            uow.payments.set_cursor("feed", 5)
            uow.payments.upsert_customer(CustomerKyc("cus_a", "VERIFIED", 1, None), NOW)
            assert uow.payments.get("pay_1") is not None
            assert uow.payments.cursor("feed") == 5
            raise RuntimeError("crash before the commit")

    with pytest.raises(RuntimeError):
        crash()
    with new_uow() as uow:
        assert uow.payments.get("pay_1") is None
        assert uow.payments.cursor("feed") == 0
        assert uow.payments.customer("cus_a") is None
    add(new_uow, payment("pay_1"))
    with new_uow() as uow:
        stored = uow.payments.get("pay_1")
    assert stored is not None
    assert (stored.state, stored.version, stored.history) == (S.CREATED, 0, [])


def test_saves_are_versioned_and_history_comes_only_when_asked(new_uow: UowFactory) -> None:
    add(new_uow, payment("pay_1"))
    with new_uow() as uow:
        loaded = uow.payments.get("pay_1")
        assert loaded is not None
        loaded.hold_placed(NOW)
        loaded.cancel(NOW, "X" * 100)
        uow.payments.save(loaded)
        events = uow.collect_events()
        uow.commit()
    assert loaded.version == 1
    assert [(e.previous_state, e.state) for e in events] == [
        (S.CREATED, S.FUNDS_HELD),
        (S.FUNDS_HELD, S.CANCELED),
    ]
    with new_uow() as uow:
        again = uow.payments.get("pay_1", history=True)
        assert uow.payments.history("pay_1") == (again.history if again else [])
    assert again is not None
    assert [t.to_state for t in again.history] == [S.CREATED, S.FUNDS_HELD, S.CANCELED]
    assert (again.reason, again.history[-1].reason) == ("X" * 64, "X" * 64)

    def stale_save() -> None:
        with new_uow() as uow:
            stale = dataclasses.replace(again, version=0)
            uow.payments.save(stale)

    with pytest.raises(StaleWrite):
        stale_save()


@pytest.mark.parametrize("new_uow", ["postgresql", "memory", "sqlite"], indirect=True)
def test_who_created_and_who_reviewed_a_payment_and_the_note_read_back(
    new_uow: UowFactory,
) -> None:
    maker = Requester("cli_maker", "cus_a", "req-make")
    checker = Requester("cli_checker", None, "req-check")
    made = payment("pay_1")
    made.created_by = maker
    made.review_required, made.review_reason = True, "LARGE_AMOUNT"
    add(new_uow, made, payment("pay_2"))
    with new_uow() as uow:
        loaded = uow.payments.get("pay_1")
        assert loaded is not None
        assert (loaded.created_by, loaded.reviewed_by, loaded.review_note) == (maker, None, "")
        loaded.hold_placed(NOW)
        loaded.reject(NOW, checker, "not this one")
        uow.payments.save(loaded)
        uow.commit()
    with new_uow() as uow:
        again = uow.payments.get("pay_1")
        anonymous = uow.payments.get("pay_2")
    assert again is not None
    assert anonymous is not None
    assert (again.created_by, again.reviewed_by, again.review_note) == (
        maker,
        checker,
        "not this one",
    )
    assert (anonymous.created_by, anonymous.reviewed_by) == (None, None)


def test_adding_an_id_twice_is_a_lost_race_the_retry_replays(new_uow: UowFactory) -> None:
    add(new_uow, payment("pay_1"))
    with new_uow() as uow:
        assert uow.is_conflict(raised(lambda: uow.payments.add(payment("pay_1"))))
    report = ReconciliationReport("rec_1", NOW.date(), 0, 0, (), NOW)
    with new_uow() as uow:
        uow.payments.add_run(report)
        uow.commit()
    with new_uow() as uow:
        assert uow.payments.get_run("rec_1") == report
        assert uow.is_conflict(raised(lambda: uow.payments.add_run(report)))


def test_queries_agree(new_uow: UowFactory) -> None:
    early = NOW - timedelta(hours=2)
    declined = payment("pay_declined", amount=1)
    declined.decline("X", NOW)
    collection = payment("pay_col", amount=1_000, kind=PaymentKind.COLLECTION)
    usd = payment("pay_usd", amount=7, currency="USD")
    old = payment("pay_old", amount=50, now=early)
    other = payment("pay_other", customer_id="cus_b", amount=9)
    live_refund = payment("pay_ref1", amount=300, kind=PaymentKind.REFUND, original="pay_col")
    dead_refund = payment("pay_ref2", amount=200, kind=PaymentKind.REFUND, original="pay_col")
    dead_refund.decline("X", NOW)
    add(new_uow, declined, collection, usd, old, other, live_refund, dead_refund)
    since = NOW - timedelta(hours=1)
    with new_uow() as uow:
        repo = uow.payments
        velocities = repo.velocities({("cus_a", "EUR"), ("cus_a", "USD"), ("cus_c", "EUR")}, since)
        got = repo.get("pay_col")
        many = repo.get_many(["pay_col", "pay_none", "pay_usd"])
        refunded = repo.refunded_amount("pay_col")
        first = repo.page(None, 2, "cus_a", None)
        rest = repo.page(first[-1].id, 10, "cus_a", None)
        declined_only = repo.page(None, 10, "", S.DECLINED)
        by_state = repo.count_by_state()
    # Payouts and collections in the window, any currency; the amount in the one asked for.
    assert velocities == {
        ("cus_a", "EUR"): (2, 1_000),
        ("cus_a", "USD"): (2, 7),
        ("cus_c", "EUR"): (0, 0),
    }
    assert got is not None
    assert got.refunded_amount == refunded == 300
    assert sorted(many) == ["pay_col", "pay_usd"]
    assert many["pay_col"].refunded_amount == 0
    assert [p.id for p in first + rest] == sorted(
        ["pay_declined", "pay_col", "pay_usd", "pay_old", "pay_ref1", "pay_ref2"]
    )
    assert [p.id for p in declined_only] == ["pay_declined", "pay_ref2"]
    assert by_state == {S.CREATED: 5, S.DECLINED: 2}


def test_workers_find_due_unleased_work_in_order(new_uow: UowFactory) -> None:
    due_late, due_early, leased, later, idle = (payment(f"pay_{i}") for i in range(5))
    due_late.next_action_at = NOW - timedelta(seconds=1)
    due_early.next_action_at = NOW - timedelta(seconds=9)
    due_early.retries = 3
    leased.next_action_at = NOW - timedelta(seconds=5)
    leased.leased_until = NOW + timedelta(seconds=5)
    later.next_action_at = NOW + timedelta(seconds=5)
    idle.next_action_at = None
    idle.retries = 9
    add(new_uow, due_late, due_early, leased, later, idle)
    with new_uow() as uow:
        claimed = [p.id for p in uow.payments.claim_due(NOW, 10)]
        first = [p.id for p in uow.payments.claim_due(NOW, 1)]
        stuck = uow.payments.count_stuck(3)
    assert claimed == ["pay_1", "pay_0"]
    assert first == ["pay_1"]
    assert stuck == 1


def test_the_bank_booked_days_cursor_and_kyc_projection_agree(new_uow: UowFactory) -> None:
    settled, returned, elsewhere = payment("pay_s"), payment("pay_r"), payment("pay_e")
    settled.bank_settled_at = NOW
    returned.bank_settled_at = NOW - timedelta(days=3)
    returned.bank_returned_at = NOW + timedelta(hours=1)
    elsewhere.bank_settled_at = NOW - timedelta(days=1)
    add(new_uow, settled, returned, elsewhere)
    start = NOW.replace(hour=0)
    since = NOW - timedelta(days=400)
    with new_uow() as uow:
        booked = uow.payments.booked_with_bank_on(NOW.date(), start, start + timedelta(days=1))
        uow.payments.set_cursor("feed", 42)
        assert uow.payments.upsert_customer(CustomerKyc("cus_a", "PENDING_REVIEW", 2, since), NOW)
        assert not uow.payments.upsert_customer(CustomerKyc("cus_a", "VERIFIED", 2, None), NOW)
        assert not uow.payments.upsert_customer(CustomerKyc("cus_a", "VERIFIED", 1, None), NOW)
        assert uow.payments.upsert_customer(CustomerKyc("cus_a", "VERIFIED", 3, None), NOW)
        uow.commit()
    assert sorted(p.id for p in booked) == ["pay_r", "pay_s"]
    with new_uow() as uow:
        assert uow.payments.cursor("feed") == 42
        assert uow.payments.customer("cus_a") == CustomerKyc("cus_a", "VERIFIED", 3, since)
        assert uow.payments.customers(["cus_a", "cus_none"], lock=True) == {
            "cus_a": CustomerKyc("cus_a", "VERIFIED", 3, since)
        }


# --- the ledger ---------------------------------------------------------------------------------


@pytest.fixture(params=["grpc", "memory"])
def ledger_port(request: pytest.FixtureRequest) -> Iterator[LedgerPort]:
    if request.param == "memory":
        yield MemoryLedger()
        return
    channel = authorized_channel(request.getfixturevalue("ledger_target"))
    yield GrpcLedger(channel)
    channel.close()


class Books:
    """Accounts of one test (unique ids), and operations on them."""

    def __init__(self, ledger: LedgerPort) -> None:
        self.ledger = ledger
        self.tag = uuid.uuid4().hex[:10]
        self.customer = f"acct_c{self.tag}_EUR"
        self.clearing = clearing_account_id("EUR")
        self.receivable = returns_receivable_account_id("EUR")
        ledger.ensure_accounts(
            [
                AccountSpec(self.customer, "EUR", False, no_overdraft=True),
                AccountSpec(self.clearing, "EUR", True),
                AccountSpec(self.receivable, "EUR", True),
            ]
        )

    def tid(self, name: str) -> str:
        return f"tr_{self.tag}_{name}"

    def op(
        self, name: str, kind: OpKind, *legs: LedgerLeg, target: str = "", shortfall: str = ""
    ) -> LedgerOperation:
        return LedgerOperation(
            name, LedgerStep.HOLD, self.tid(name), kind, tuple(legs), target, shortfall
        )

    def credit(self, name: str, amount: int) -> LedgerOperation:
        return self.op(
            name,
            OpKind.MOVEMENT,
            LedgerLeg(self.clearing, True, amount, "EUR"),
            LedgerLeg(self.customer, False, amount, "EUR"),
        )

    def hold(self, name: str, amount: int) -> LedgerOperation:
        return self.op(
            name,
            OpKind.PENDING,
            LedgerLeg(self.customer, True, amount, "EUR"),
            LedgerLeg(self.clearing, False, amount, "EUR"),
        )

    def one(self, operation: LedgerOperation) -> tuple[bool, str]:
        (result,) = self.ledger.apply([operation])
        return result.ok, result.reason

    def sums(self) -> tuple[int, int, int, int]:
        totals = self.ledger.running_totals([self.customer])[self.customer]
        return (
            totals.debits_posted,
            totals.credits_posted,
            totals.debits_pending,
            totals.credits_pending,
        )


def test_the_ledger_applies_each_transfer_id_once_and_replays_refusals(
    ledger_port: LedgerPort,
) -> None:
    books = Books(ledger_port)
    assert books.one(books.credit("fund", 100)) == (True, "")
    assert books.one(books.hold("big", 150)) == (False, "INSUFFICIENT_FUNDS")
    assert books.one(books.hold("ok", 60)) == (True, "")
    assert books.one(books.hold("ok", 60)) == (True, "")  # a replay: held once
    assert books.one(books.hold("ok", 61)) == (False, "IDEMPOTENCY_KEY_REUSED")
    assert books.one(books.credit("more", 100)) == (True, "")
    assert books.one(books.hold("big", 150)) == (False, "INSUFFICIENT_FUNDS")  # as the first time
    assert books.sums() == (0, 200, 60, 0)
    post = books.op("post", OpKind.POST, target=books.tid("ok"))
    void = books.op("void", OpKind.VOID, target=books.tid("ok"))
    assert books.one(post) == (True, "")
    assert books.one(void) == (False, "ALREADY_POSTED")
    missing = books.op("void_none", OpKind.VOID, target=books.tid("none"))
    assert books.one(missing) == (False, "PENDING_TRANSFER_NOT_FOUND")
    assert books.sums() == (60, 200, 0, 0)
    bookings = ledger_port.clearing_bookings([books.tid("post"), books.tid("fund")])
    assert bookings == {books.tid("post"): -60, books.tid("fund"): 100}


def test_a_reversal_takes_back_what_it_can_and_the_shortfall_account_the_rest(
    ledger_port: LedgerPort,
) -> None:
    books = Books(ledger_port)
    assert books.one(books.credit("col", 100)) == (True, "")
    assert books.one(books.hold("spent", 70)) == (True, "")
    assert books.one(books.op("spent_post", OpKind.POST, target=books.tid("spent"))) == (True, "")
    reverse = books.op("rev", OpKind.REVERSE, target=books.tid("col"), shortfall=books.receivable)
    assert books.one(reverse) == (True, "")
    assert books.one(reverse) == (True, "")
    again = books.op("rev2", OpKind.REVERSE, target=books.tid("col"), shortfall=books.receivable)
    assert books.one(again) == (False, "ALREADY_REVERSED")
    # The customer gave back the 30 left; clearing was credited the full 100.
    assert books.sums() == (100, 100, 0, 0)
    assert ledger_port.clearing_bookings([books.tid("rev")]) == {books.tid("rev"): -100}


def test_one_bad_operation_costs_only_its_own_answer(ledger_port: LedgerPort) -> None:
    books = Books(ledger_port)
    malformed = books.op(
        "bad",
        OpKind.MOVEMENT,
        LedgerLeg(books.clearing, True, 5, "EUR"),
        LedgerLeg("acct_" + "x" * 61, False, 5, "EUR"),
    )
    with pytest.raises(LedgerRequestRefused):
        ledger_port.apply([books.credit("a", 10), malformed])
    too_large = books.credit("huge", MAX_AMOUNT + 1)
    refused, booked = ledger_port.apply([too_large, books.credit("b", 20)])
    assert (refused.ok, refused.reason, booked.ok) == (False, "INVALID_LEDGER_OPERATION", True)
    assert books.sums() == (0, 20, 0, 0)


# --- the bank -------------------------------------------------------------------------------


@pytest.fixture(params=["sandbox", "memory"])
def bank_port(request: pytest.FixtureRequest) -> Iterator[BankGateway]:
    if request.param == "memory":
        yield MemoryBank(ManualClock())
        return
    sandbox: SandboxBank = request.getfixturevalue("sandbox_bank")
    gateway = HttpBankGateway(
        sandbox.url,
        policy=RetryPolicy(max_attempts=2, initial_backoff=0.02, max_backoff=0.1, budget=4.0),
        breaker=new_breaker(f"bank-{uuid.uuid4().hex[:6]}", 5, 1.0),
        auth=sandbox.auth(),
    )
    yield gateway
    gateway.close()


def test_the_bank_makes_one_payment_per_idempotency_key(bank_port: BankGateway) -> None:
    key = f"pay_{uuid.uuid4().hex[:12]}"
    instruction = BankInstruction(key, True, 1_000, "EUR", BankAccount("DE0012345", "Bob"), key)
    first = bank_port.submit(instruction)
    again = bank_port.submit(instruction)
    assert first.result is again.result is SubmitResult.ACCEPTED
    assert first.payment is not None
    assert again.payment is not None
    assert first.payment.bank_payment_id == again.payment.bank_payment_id
    assert (first.payment.reference, first.payment.amount) == (key, 1_000)
    reused = bank_port.submit(dataclasses.replace(instruction, amount=999))
    assert (reused.result, reused.code) == (SubmitResult.REFUSED, "idempotency_key_reused")
    found = bank_port.lookup(key)
    assert found.result is LookupResult.FOUND
    assert found.payment is not None
    assert found.payment.bank_payment_id == first.payment.bank_payment_id
    assert bank_port.lookup(f"pay_{uuid.uuid4().hex[:12]}").result is LookupResult.NOT_FOUND
    events, after = bank_port.events(0, 1.0)
    mine = [e for e in events if e.payment.reference == key]
    assert mine
    assert mine[0].status.value == "pending"
    assert after >= mine[0].sequence


def test_activity_and_alerts_agree_on_both_adapters(new_uow: UowFactory) -> None:
    """What monitoring reads: recent payments with their counterparties' tags (the same
    account, the same tag; another customer, another tag), who was paid before the window,
    open alerts; alerts stored, paged, resolved once."""
    window_start = NOW - timedelta(hours=24)
    old = payment("pay_old", now=NOW - timedelta(days=3))
    other_account = payment("pay_new", now=NOW - timedelta(hours=1))
    other_account.counterparty = BankAccount("FR11", "Zed")
    collected = payment("pay_in", kind=PaymentKind.COLLECTION, now=NOW - timedelta(minutes=5))
    declined = payment("pay_no", now=NOW - timedelta(minutes=1))
    declined.decline("AMOUNT_OVER_LIMIT", NOW)
    elsewhere = payment("pay_b", customer_id="cus_b", now=NOW - timedelta(minutes=2))
    add(new_uow, old, other_account, collected, declined, elsewhere)
    with new_uow() as uow:
        tags = uow.payments.counterparty_tags(
            {("cus_a", "DE00"), ("cus_a", "de-00"), ("cus_a", "FR11"), ("cus_b", "DE00")}
        )
        assert tags[("cus_a", "DE00")] == tags[("cus_a", "de-00")]
        assert len({tags[("cus_a", "DE00")], tags[("cus_a", "FR11")], tags[("cus_b", "DE00")]}) == 3
        asked = {"cus_a": [tags[("cus_a", "DE00")]], "cus_b": [tags[("cus_b", "DE00")]]}
        read = uow.payments.activities(asked, window_start, window_start)
        finding = Finding(AlertRule.RAPID_IN_OUT, ("pay_in", "pay_new"), {"collected": 100})
        alert = Alert.raised("cus_a", "pay_new", finding, NOW)
        uow.payments.add_alerts([alert])
        uow.commit()
    mine = read["cus_a"]
    assert [(p.payment_id, p.kind) for p in mine.recent] == [
        ("pay_new", PaymentKind.PAYOUT),
        ("pay_in", PaymentKind.COLLECTION),
    ]
    assert mine.recent[0].counterparty == tags[("cus_a", "FR11")]
    assert mine.recent[1].counterparty == tags[("cus_a", "DE00")]
    # DE00 was paid three days ago, before the window; FR11 never before it.
    assert mine.known_counterparties == {tags[("cus_a", "DE00")]}
    assert mine.open_rules == frozenset()
    assert [p.payment_id for p in read["cus_b"].recent] == ["pay_b"]
    assert read["cus_b"].known_counterparties == frozenset()
    with new_uow() as uow:
        again = uow.payments.activities({"cus_a": []}, window_start, window_start)
        assert again["cus_a"].open_rules == {AlertRule.RAPID_IN_OUT}
        # Not asked about, but a recent payment's: DE00 (the collection's) was paid before.
        assert again["cus_a"].known_counterparties == {tags[("cus_a", "DE00")]}
        stored = uow.payments.get_alert(alert.id, lock=True)
        assert stored is not None
        assert (stored.payment_ids, dict(stored.evidence), stored.created_at) == (
            ("pay_in", "pay_new"),
            {"collected": 100},
            NOW,
        )
        stored.resolve(AlertResolution.CONFIRMED, NOW, Requester("cli_rev", None, "req-1"), "ok")
        uow.payments.save_alert(stored)
        uow.commit()
    with new_uow() as uow:
        stale = uow.payments.get_alert(alert.id)
        assert stale is not None
        stale.version -= 1
        assert isinstance(raised(lambda: uow.payments.save_alert(stale)), StaleWrite)
        page = uow.payments.alert_page(None, 10, "cus_a", AlertState.RESOLVED, None)
        assert [a.id for a in page] == [alert.id]
        assert page[0].resolved_by == Requester("cli_rev", None, "req-1")
        assert page[0].resolution is AlertResolution.CONFIRMED
        assert uow.payments.alert_page(None, 10, "", AlertState.OPEN, None) == []
        assert uow.payments.alert_page(alert.id, 10, "", None, None) == []
        assert uow.payments.activities({"cus_a": []}, NOW, NOW)["cus_a"].open_rules == frozenset()
