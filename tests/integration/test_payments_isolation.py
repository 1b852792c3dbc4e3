"""Group commit without shared fate: one bad creation among good concurrent ones.

Concurrent CreatePayout calls are decided in groups (``CreationBatcher``): one
transaction decides them, one ledger request holds their funds, one transaction
records the holds. Here one bad request joins a group of good ones, with a fault
injected at each stage it passes through. Whatever the stage: every good caller
gets its payment, held once in the ledger, and a retry with the same id replays
it; the bad caller gets its own outcome, and never an error for a payment that
was committed; at the end nothing was paid twice.

The groups are made deterministic with a gate: the first group is held in
``create_payments`` until the others have queued behind it, so the next group
is the bad request and the good ones together.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import payments.bootstrap
import payments.domain.creation
import payments.service_layer.creation
import pytest
from astra.payments.v1 import payments_pb2 as pb
from chassis.kernel.errors import DomainError, ErrorCategory
from payments.adapters.repository import PaymentsRepository
from payments.domain.ledger_plan import LedgerOperation, customer_account_id
from payments.domain.model import BankAccount, LedgerStep, PaymentRequest, transfer_id
from payments.domain.states import PaymentKind
from payments.service_layer.creation import Creation, submit_creation

from tests.payments_fixtures import TERMINAL, Suite, make_suite, rpc_error

GOOD = 6
AMOUNT = 1_000
FEE = 100
FUNDING = 100_000
INTERNAL = grpc.StatusCode.INTERNAL

Req = TypeVar("Req")
Out = TypeVar("Out")


# --- the suite and the gate ----------------------------------------------------------------


@pytest.fixture
def suite(request: pytest.FixtureRequest) -> Iterator[Suite]:
    made, close = make_suite(
        request.getfixturevalue("payments_db_url"),
        request.getfixturevalue("sandbox_bank"),
        request.getfixturevalue("ledger_target"),
        request.getfixturevalue("identity_server"),
        create_batch_workers=1,
        payout_fee_fixed={"EUR": FEE},
        worker_lease_seconds=2.0,
    )
    yield made
    close()


@dataclass
class Gate:
    """Once armed, holds the first group in ``create_payments`` until the test lets it go."""

    armed: bool = False
    groups: list[list[str]] = field(default_factory=list)
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    submitted: Counter[str] = field(default_factory=Counter)

    def wait_queued(self, payment_id: str) -> None:
        wait_until(
            lambda: self.submitted[payment_id] > 0, f"{payment_id} never reached the batcher"
        )


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Gate:
    gate = Gate()
    real = payments.service_layer.creation.create_payments

    def gated(deps: Any, creations: Sequence[Creation]) -> list[Any]:
        if not gate.armed:
            return real(deps, creations)
        gate.groups.append([c.request.payment_id for c in creations])
        if len(gate.groups) == 1:
            gate.held.set()
            assert gate.release.wait(60)
        return real(deps, creations)

    # CreationBatcher's execute looks the function up at every call.
    monkeypatch.setattr(payments.bootstrap, "create_payments", gated)
    return gate


@dataclass
class Counting:
    """The app's CreationBatcher, counting the calls that have reached it."""

    real: Any
    gate: Gate

    def submit(self, creation: Creation, timeout: float | None = None) -> Any:
        self.gate.submitted[creation.request.payment_id] += 1
        return self.real.submit(creation, timeout)

    def close(self) -> None:
        self.real.close()


Call = Callable[[], pb.Payment]


def outcome(call: Call) -> pb.Payment | grpc.RpcError:
    try:
        return call()
    except grpc.RpcError as error:
        return error


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def in_one_group(
    suite: Suite, gate: Gate, blocker_call: Call, bad: tuple[str, Call], goods: dict[str, Call]
) -> tuple[pb.Payment | grpc.RpcError, dict[str, pb.Payment | grpc.RpcError]]:
    """Run ``bad`` and ``goods`` concurrently, queued behind a held group so they form one."""
    suite.app.creator = Counting(suite.app.creator, gate)  # type: ignore[assignment]
    gate.armed = True
    with ThreadPoolExecutor(max_workers=len(goods) + 2) as pool:
        blocker = pool.submit(outcome, blocker_call)
        assert gate.held.wait(60)
        bad_id, bad_call = bad
        bad_future = pool.submit(outcome, bad_call)
        gate.wait_queued(bad_id)
        futures = {}
        for payment_id, call in goods.items():
            futures[payment_id] = pool.submit(outcome, call)
            gate.wait_queued(payment_id)
        gate.release.set()
        results = {pid: f.result() for pid, f in futures.items()}
        blocker.result()
        bad_outcome = bad_future.result()
    gate.armed = False
    suite.app.creator = suite.app.creator.real  # type: ignore[attr-defined]
    assert any(bad_id in group and len(group) > 1 for group in gate.groups), gate.groups
    return bad_outcome, results


# --- scenario -----------------------------------------------------------------------------------


@dataclass
class Scenario:
    suite: Suite
    gate: Gate
    customer: str = ""
    # A good payout whose group is held while the others queue behind it.
    blocker_id: str = ""
    bad_id: str = ""
    good_ids: list[str] = field(default_factory=list)

    def payout(self, payment_id: str, customer: str = "") -> Call:
        return lambda: self.suite.payout(customer or self.customer, AMOUNT, payment_id=payment_id)

    def run(self, bad_customer: str = "") -> tuple[Any, dict[str, Any]]:
        goods = {pid: self.payout(pid) for pid in self.good_ids}
        bad = (self.bad_id, self.payout(self.bad_id, bad_customer))
        outcomes = in_one_group(self.suite, self.gate, self.payout(self.blocker_id), bad, goods)
        assert self.gate.groups[0] == [self.blocker_id]
        return outcomes

    def rerun(self, bad_customer: str = "") -> tuple[Any, dict[str, Any]]:
        """The same requests again (the blocker too), grouped the same way."""
        self.gate.groups.clear()
        self.gate.held.clear()
        self.gate.release.clear()
        self.gate.submitted.clear()
        return self.run(bad_customer)


@pytest.fixture
def scenario(suite: Suite, gate: Gate) -> Scenario:
    return start(suite, gate)


def start(suite: Suite, gate: Gate) -> Scenario:
    customer = suite.customer()
    suite.fund(customer, FUNDING)
    # Workers are driven by hand from here (``settle``): nothing acts behind the test's back.
    suite.stop_rounds()
    return Scenario(
        suite,
        gate,
        customer,
        blocker_id=suite.new_id("pay_blocker"),
        bad_id=suite.new_id("pay_bad"),
        good_ids=[suite.new_id("pay_good") for _ in range(GOOD)],
    )


def customer_holds(suite: Suite, customer: str) -> int:
    return int(suite.balance(customer_account_id(customer, "EUR")).debits_pending)


def check_goods_held_once_and_replayed(
    scenario: Scenario, results: dict[str, Any], held_elsewhere: int = 0
) -> None:
    suite = scenario.suite
    for payment_id, result in results.items():
        assert isinstance(result, pb.Payment), (payment_id, result)
        assert result.state == pb.PAYMENT_STATE_FUNDS_HELD, result
    # The group's blocker is a good payout too: every good one held exactly once.
    held = len(results) + 1 + held_elsewhere
    assert customer_holds(suite, scenario.customer) == held * (AMOUNT + FEE)
    for payment_id, result in results.items():
        again = suite.payout(scenario.customer, AMOUNT, payment_id=payment_id)
        assert (again.id, again.state, again.create_time) == (
            result.id,
            result.state,
            result.create_time,
        )
    assert customer_holds(suite, scenario.customer) == held * (AMOUNT + FEE)


def settle(suite: Suite, payment_ids: Sequence[str]) -> list[pb.Payment]:
    """Drive the workers by hand until every payment is terminal and booked."""
    deadline = time.monotonic() + 120
    while True:
        suite.process_due()
        suite.follow_bank_feed()
        finals = [suite.get(pid) for pid in payment_ids]
        if all(p.state in TERMINAL and not p.ledger_pending for p in finals):
            return finals
        assert time.monotonic() < deadline, finals


def check_nothing_paid_twice(scenario: Scenario, paid: Sequence[str]) -> None:
    suite = scenario.suite
    finals = settle(suite, paid)
    assert {p.state for p in finals} == {pb.PAYMENT_STATE_SETTLED}
    references = Counter(p["reference"] for p in suite.bank.payments())
    assert all(references[pid] == 1 for pid in paid), references
    assert max(references.values()) == 1
    # Funding, less what was paid out and its fees; nothing held any more.
    balance = suite.balance(customer_account_id(scenario.customer, "EUR"))
    assert (balance.posted, balance.pending) == (FUNDING - len(paid) * (AMOUNT + FEE), 0)


def not_found(suite: Suite, payment_id: str) -> bool:
    error = rpc_error(lambda: suite.get(payment_id))
    return bool(error.code() == grpc.StatusCode.NOT_FOUND)


# --- a fault at each stage ------------------------------------------------------------------


def test_a_decision_that_raises_fails_only_its_own_request(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = payments.domain.creation.decide_payment

    def decide(request: Any, *args: Any, **kwargs: Any) -> Any:
        if request.payment_id == scenario.bad_id:
            raise RuntimeError("injected: this request cannot be decided")
        return real(request, *args, **kwargs)

    monkeypatch.setattr(payments.service_layer.creation, "decide_payment", decide)
    bad, goods = scenario.run()
    assert isinstance(bad, grpc.RpcError)
    assert bad.code() == INTERNAL
    assert not_found(scenario.suite, scenario.bad_id)
    check_goods_held_once_and_replayed(scenario, goods)
    check_nothing_paid_twice(scenario, [scenario.blocker_id, *scenario.good_ids])


class FailingHolds:
    """The real ledger, except that any request holding one payment's funds raises."""

    def __init__(self, real: Any, payment_id: str) -> None:
        self.real = real
        self.hold = transfer_id(payment_id, LedgerStep.HOLD)

    def apply(self, operations: Sequence[LedgerOperation]) -> Any:
        if any(op.transfer_id == self.hold for op in operations):
            raise RuntimeError("injected: the ledger request failed")
        return self.real.apply(operations)

    def apply_one(self, operation: LedgerOperation) -> Any:
        return self.apply([operation])[0]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_ledger_request_that_raises_fails_no_caller_and_holds_every_good_payout_once(
    scenario: Scenario,
) -> None:
    deps = scenario.suite.app.deps
    real = deps.ledger
    deps.ledger = FailingHolds(real, scenario.bad_id)
    try:
        bad, goods = scenario.run()
    finally:
        deps.ledger = real
    # Committed, its hold unknown: the caller gets the payment, a worker holds it later.
    assert isinstance(bad, pb.Payment), bad
    assert bad.state == pb.PAYMENT_STATE_CREATED, bad
    check_goods_held_once_and_replayed(scenario, goods)
    check_nothing_paid_twice(scenario, [scenario.blocker_id, scenario.bad_id, *scenario.good_ids])


def test_holds_whose_outcome_cannot_be_recorded_together_are_recorded_alone(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = PaymentsRepository.save_all
    armed = [True]

    def save_all(self: PaymentsRepository, batch: Sequence[Any]) -> None:
        if armed[0] and any(p.id == scenario.bad_id for p in batch):
            raise RuntimeError("injected: this row cannot be written")
        real(self, batch)

    monkeypatch.setattr(PaymentsRepository, "save_all", save_all)
    bad, goods = scenario.run()
    armed[0] = False
    # Held in the ledger, the outcome not written: the committed payment, no error.
    assert isinstance(bad, pb.Payment), bad
    assert bad.state == pb.PAYMENT_STATE_CREATED, bad
    check_goods_held_once_and_replayed(scenario, goods, held_elsewhere=1)
    check_nothing_paid_twice(scenario, [scenario.blocker_id, scenario.bad_id, *scenario.good_ids])


def test_a_single_path_creation_that_raises_fails_only_its_own_request(
    scenario: Scenario,
) -> None:
    suite = scenario.suite
    stranger = suite.customer()  # unknown to payments' projection: the single path asks identity
    deps = suite.app.deps
    real = deps.identity

    class FailingIdentity:
        def get_customer(self, customer_id: str) -> Any:
            if customer_id == stranger:
                raise RuntimeError("injected: identity answered garbage")
            return real.get_customer(customer_id)

    deps.identity = FailingIdentity()
    try:
        bad, goods = scenario.run(bad_customer=stranger)
    finally:
        deps.identity = real
    assert isinstance(bad, grpc.RpcError)
    assert bad.code() == INTERNAL
    assert not_found(suite, scenario.bad_id)
    check_goods_held_once_and_replayed(scenario, goods)
    check_nothing_paid_twice(scenario, [scenario.blocker_id, *scenario.good_ids])


@pytest.mark.parametrize("stage", ["ledger", "record"])
def test_running_a_group_again_after_its_commit_replays_it_and_holds_nothing_twice(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    """What a group commit that splits a failed group does: the same requests again."""
    suite = scenario.suite
    deps = suite.app.deps
    real_ledger, real_save = deps.ledger, PaymentsRepository.save_all
    armed = [True]

    class NoLedger:
        def __getattr__(self, name: str) -> Any:
            if armed[0]:
                raise RuntimeError("injected: every ledger call fails")
            return getattr(real_ledger, name)

    def save_all(self: PaymentsRepository, batch: Sequence[Any]) -> None:
        if armed[0]:
            raise RuntimeError("injected: nothing can be recorded")
        real_save(self, batch)

    if stage == "ledger":
        deps.ledger = NoLedger()
    else:
        monkeypatch.setattr(PaymentsRepository, "save_all", save_all)
    first, firsts = scenario.run()
    armed[0] = False
    deps.ledger = real_ledger
    for result in [first, *firsts.values()]:
        assert isinstance(result, pb.Payment)
        assert result.state == pb.PAYMENT_STATE_CREATED
    everyone = [scenario.blocker_id, scenario.bad_id, *scenario.good_ids]
    # Committed without their holds recorded (stage "ledger": nor placed).
    held_before = customer_holds(suite, scenario.customer)
    assert held_before == (0 if stage == "ledger" else len(everyone) * (AMOUNT + FEE))
    again, agains = scenario.rerun()
    for payment_id, result in {scenario.bad_id: again, **agains}.items():
        assert isinstance(result, pb.Payment), result
        assert (result.id, result.state) == (payment_id, pb.PAYMENT_STATE_FUNDS_HELD)
    assert suite.get(scenario.blocker_id).state == pb.PAYMENT_STATE_FUNDS_HELD
    assert customer_holds(suite, scenario.customer) == len(everyone) * (AMOUNT + FEE)
    check_nothing_paid_twice(scenario, everyone)


# --- a deadline that passes while a call waits in a group ------------------------------------


def test_a_deadline_that_passes_in_the_queue_is_deadline_exceeded_and_the_outcome_learnable(
    scenario: Scenario,
) -> None:
    suite, gate = scenario.suite, scenario.gate
    late_id = scenario.good_ids[0]
    request = PaymentRequest(
        payment_id=late_id,
        kind=PaymentKind.PAYOUT,
        customer_id=scenario.customer,
        amount=AMOUNT,
        currency="EUR",
        counterparty=BankAccount("DE89370400440532013000", "Bob"),
    )
    gate.armed = True
    with ThreadPoolExecutor(max_workers=1) as pool:
        blocker = pool.submit(outcome, scenario.payout(scenario.blocker_id))
        assert gate.held.wait(60)
        with pytest.raises(DomainError) as late:
            submit_creation(suite.app.deps, suite.app.creator, request, "destination", timeout=0.05)
        gate.release.set()
        assert isinstance(blocker.result(), pb.Payment)
    gate.armed = False
    assert late.value.category is ErrorCategory.DEADLINE_EXCEEDED
    # Asking again with the same id gives the payment, held once.
    again = suite.payout(scenario.customer, AMOUNT, payment_id=late_id)
    assert again.state == pb.PAYMENT_STATE_FUNDS_HELD
    assert customer_holds(suite, scenario.customer) == 2 * (AMOUNT + FEE)


# --- a group transaction that fails as a whole --------------------------------------------


def transaction_fails_for(monkeypatch: pytest.MonkeyPatch, bad_id: str) -> None:
    real = PaymentsRepository.add_all

    def add_all(self: PaymentsRepository, batch: Sequence[Any]) -> None:
        if any(p.id == bad_id for p in batch):
            raise RuntimeError("injected: the database refuses this row")
        real(self, batch)

    monkeypatch.setattr(PaymentsRepository, "add_all", add_all)


def check_split(scenario: Scenario, bad: Any, goods: dict[str, Any]) -> None:
    assert isinstance(bad, grpc.RpcError)
    assert bad.code() == INTERNAL
    assert not_found(scenario.suite, scenario.bad_id)
    check_goods_held_once_and_replayed(scenario, goods)
    check_nothing_paid_twice(scenario, [scenario.blocker_id, *scenario.good_ids])


def test_the_real_group_committer_splits_a_group_whose_transaction_fails(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    transaction_fails_for(monkeypatch, scenario.bad_id)
    bad, goods = scenario.run()
    check_split(scenario, bad, goods)


# --- a worker round: one payment's failure is its own ------------------------------------------


def test_a_bank_call_that_raises_for_one_payment_leaves_the_rest_of_the_round_going(
    scenario: Scenario,
) -> None:
    suite = scenario.suite
    unlucky, lucky = (
        suite.payout(scenario.customer, AMOUNT, payment_id=pid) for pid in scenario.good_ids[:2]
    )
    deps = suite.app.deps
    real = deps.bank

    class FailingFor:
        def submit(self, instruction: Any) -> Any:
            if instruction.idempotency_key == unlucky.id:
                raise RuntimeError("injected: the bank client broke on this payment")
            return real.submit(instruction)

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    deps.bank = FailingFor()
    try:
        assert suite.process_due() == 2
    finally:
        deps.bank = real
    # The other payment of the round went to the bank; the unlucky one is retried, not lost.
    assert suite.get(lucky.id).state in (pb.PAYMENT_STATE_SUBMITTED, pb.PAYMENT_STATE_SETTLED)
    assert suite.get(unlucky.id).state == pb.PAYMENT_STATE_SUBMITTING
    finals = settle(suite, [unlucky.id, lucky.id])
    assert {p.state for p in finals} == {pb.PAYMENT_STATE_SETTLED}
    references = Counter(p["reference"] for p in suite.bank.payments())
    assert (references[unlucky.id], references[lucky.id]) == (1, 1)
