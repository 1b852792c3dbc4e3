"""One run: the suite wired together, a seeded workload of clients, the checkers.

A run is: a few seconds of simulated time of customers, KYC, payouts,
collections, refunds, cancels, approvals, ledger holds with expiry, posts,
voids, reversals and as-of reads, with the seed's fault mix; then the faults
stop, the bank decides what is pending, the workers and subscribers drain, and
the next day's reconciliation runs. The checkers (``simulation.checkers``)
watch during the run and judge after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import grpc
from astra.ledger.v1 import ledger_pb2 as pb
from astra.ledger.v1 import ledger_pb2_grpc
from chassis.kernel.audit import Requester
from chassis.kernel.errors import DomainError, ErrorCategory
from chassis.protos import set_timestamp
from identity.adapters.events import to_outbox_message as identity_message
from identity.domain.model import CustomerSpec, KycDecision
from identity.service_layer import use_cases as identity_use_cases
from ledger.adapters.events import to_outbox_message as ledger_message
from payments.adapters.events import to_outbox_message as payments_message
from payments.adapters.ledger_client import GrpcLedger
from payments.domain.ledger_plan import (
    AccountSpec,
    LedgerLeg,
    LedgerOperation,
    OpKind,
    customer_account_id,
)
from payments.domain.model import BankAccount, LedgerStep, Payment, PaymentRequest
from payments.domain.states import TERMINAL, PaymentKind, PaymentState
from payments.entrypoints.kyc_subscriber import kyc_handlers
from payments.service_layer import rounds
from payments.service_layer import use_cases as payments_use_cases
from payments.service_layer.creation import Creation, create_payments
from payments.service_layer.ports import IdentityUnavailable, LedgerUnavailable
from payments.service_layer.use_cases import Deps

from simulation import checkers
from simulation.bank import SimBank
from simulation.core import START, Faults, ProcessCrash, Simulation
from simulation.network import SimChannel, SimRpcError
from simulation.processes import IdentityProcess, LedgerProcess, PaymentsProcess
from simulation.pubsub import PubSub, Relay

CCY = "EUR"
MAKER = payments_use_cases.Caller(client_id="cli_maker")
CHECKER = payments_use_cases.Caller(client_id="cli_checker")
DESTINATION = BankAccount("DE89370400440532013000", "Bob")
SOURCE = BankAccount("FR7630006000011234567890189", "Carol")
FUNDING = "acct_sim_funding"
OPS_SOURCE, OPS_TARGET = "acct_ops_source", "acct_ops_target"
WORKLOAD_SECONDS = 5.0
DRAIN_SECONDS = 400.0


@dataclass
class Observed:
    """What the clients were told, for the checkers."""

    # payment id -> the payment first acknowledged (what a replay must equal)
    payments: dict[str, Payment] = field(default_factory=dict)
    # payment id -> a final refusal's reason
    refused: dict[str, str] = field(default_factory=dict)
    # transfer id -> the transfer message first acknowledged (a refusal: its reason)
    transfers: dict[str, pb.Transfer] = field(default_factory=dict)
    transfer_refusals: dict[str, str] = field(default_factory=dict)
    # transfer id -> the transfer it refers to (a post, void or reversal)
    targets: dict[str, str] = field(default_factory=dict)
    # (account, as-of instant) -> the balance first answered
    as_of: dict[tuple[str, str], pb.Balance] = field(default_factory=dict)
    # The payouts clients meant, each tried under one payment id after another
    intents: dict[str, list[str]] = field(default_factory=dict)


class World:
    def __init__(self, seed: int, faults: Faults | None = None) -> None:
        sim = self.sim = Simulation(seed, faults)
        self.bank = SimBank(sim)
        self.ledger = LedgerProcess(sim)
        self.identity = IdentityProcess(sim)
        self.payments = PaymentsProcess(sim, self.ledger, self.identity, self.bank)
        self.pubsub = PubSub(sim)
        self.seen = Observed()
        self.customers: list[str] = []
        self._ids = 0
        self.consumed: dict[str, dict[str, list[str]]] = {}  # consumer -> key -> event ids
        self._wire_events()
        self._wire_workers()
        # The clients' own channel to the ledger (single-transfer calls, reads).
        channel: Any = SimChannel(sim, "client", self.ledger.server)
        self.ledger_stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        self.funder = GrpcLedger(channel)

    def next_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}_s{self.sim.seed}_{self._ids}"

    # --- wiring ---

    def _wire_events(self) -> None:
        sim, pubsub = self.sim, self.pubsub
        ledger, identity, payments = self.ledger, self.identity, self.payments

        def set_ledger(n: int) -> None:
            ledger.relay_mark = n

        def set_identity(n: int) -> None:
            identity.relay_mark = n

        def set_payments(n: int) -> None:
            payments.db.relay_mark = n

        Relay(
            sim,
            pubsub,
            "ledger",
            "//astra.ledger",
            lambda: ledger.db.events,
            ledger_message,
            lambda: ledger.relay_mark,
            set_ledger,
            "ledger",
        )
        Relay(
            sim,
            pubsub,
            "identity",
            "//astra.identity",
            lambda: identity.db.events,
            identity_message,
            lambda: identity.relay_mark,
            set_identity,
            "identity",
        )
        Relay(
            sim,
            pubsub,
            "payments",
            "//astra.payments",
            lambda: payments.db.outbox,
            payments_message,
            lambda: payments.db.relay_mark,
            set_payments,
            "payments",
        )

        # Payments' real KYC handlers; the "connection" they pass on is the event's id, which
        # the unit of work commits as its inbox row in the same transaction as the effect.
        app = _KycApp(payments)
        handlers = kyc_handlers(app)  # type: ignore[arg-type]

        def on_identity_event(event: Any) -> None:
            if event.id in payments.db.inbox:
                return  # a redelivery: no second effect
            handler = handlers.get(type(event.message))
            if handler is not None:
                try:
                    handler(event, event.id)
                except ProcessCrash as crash:
                    sim.crash(crash.process)
                    raise
            self._consumed("payments-kyc", event)

        pubsub.subscribe("identity", "payments-kyc", "payments", on_identity_event)
        for topic in ("ledger", "identity", "payments"):
            name = f"audit-{topic}"
            self.consumed[name] = {}
            inbox: set[str] = set()

            def audit(event: Any, name: str = name, inbox: set[str] = inbox) -> None:
                if event.id not in inbox:
                    inbox.add(event.id)
                    self._consumed(name, event)

            pubsub.subscribe(topic, name, "audit", audit)
        self.consumed["payments-kyc"] = {}

    def _consumed(self, consumer: str, event: Any) -> None:
        self.consumed.setdefault(consumer, {}).setdefault(event.ordering_key, []).append(event.id)

    def _wire_workers(self) -> None:
        sim, payments = self.sim, self.payments

        def process_due() -> None:
            rounds.process_due(payments.deps, batch_size=50)

        def follow_feed() -> None:
            try:
                rounds.follow_bank_feed(payments.deps, wait_seconds=0)
            except Exception as error:
                # The feed's reader logs and waits (entrypoints.workers); the bank being down
                # is the only failure it expects.
                if type(error).__name__ != "BankUnavailable":
                    sim.violation(f"bank feed round raised {error!r}")

        sim.every(0.5, "payments due", "payments", process_due)
        sim.every(1.0, "payments feed", "payments", follow_feed)
        sim.every(0.5, "checks", "audit", lambda: checkers.continuous(self))

    # --- a client's call, with the network between it and the service ----------------------------

    def call(
        self,
        process: str,
        name: str,
        work: Callable[[], Any],
        done: Callable[[Any], None],
        refused: Callable[[DomainError], None] = lambda _e: None,
        tries: int = 8,
    ) -> None:
        """Call ``work`` in ``process`` as a client would: a lost request, a lost reply or a
        crash is retried later with the same ids; each answer goes to ``done`` or ``refused``."""
        sim = self.sim

        def attempt(left: int) -> None:
            def retry() -> None:
                if left > 1:
                    sim.after(sim.rng.uniform(0.05, 1.5), name, "client", lambda: attempt(left - 1))

            if not sim.process(process).up or sim.chance(sim.faults.network_drop):
                retry()
                return
            try:
                result = work()
            except ProcessCrash as crash:
                sim.crash(crash.process)
                retry()
                return
            except SimRpcError as error:
                if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    retry()
                    return
                # INTERNAL is counted by the server; other refusals are read by ``work``.
                sim.record(f"{name} failed {error.code().name}")
                return
            except (LedgerUnavailable, IdentityUnavailable):
                retry()
                return
            except DomainError as error:
                if error.category in (ErrorCategory.UNAVAILABLE, ErrorCategory.DEADLINE_EXCEEDED):
                    retry()
                    return
                sim.record(f"{name} refused {error.reason}")
                refused(error)
                return
            except Exception as error:
                sim.violation(f"{name}: unexpected {error!r}")
                return
            if sim.chance(sim.faults.network_lost_reply):
                sim.record(f"{name} reply lost")
                retry()
                return
            done(result)

        sim.after(0, name, "client", lambda: attempt(tries))

    # --- the workload ---

    def setup(self) -> None:
        sim = self.sim
        for _ in range(sim.rng.randint(2, 5)):
            self.new_customer()
        # House accounts of the ledger clients, and their money.
        specs = [
            AccountSpec(FUNDING, CCY, debit_normal=True),
            AccountSpec(OPS_SOURCE, CCY, debit_normal=False, no_overdraft=True),
            AccountSpec(OPS_TARGET, CCY, debit_normal=False),
        ]
        self.call(
            "ledger",
            "open house accounts",
            lambda: self.funder.ensure_accounts(specs),
            lambda _r: None,
        )
        self.fund(OPS_SOURCE, 50_000, 0.5)

    def fund(self, account_id: str, amount: int, delay: float) -> None:
        transfer = self.next_id("tr_fund")
        operation = LedgerOperation(
            "funding",
            LedgerStep.CREDIT,
            transfer,
            OpKind.MOVEMENT,
            (LedgerLeg(FUNDING, True, amount, CCY), LedgerLeg(account_id, False, amount, CCY)),
        )

        def done(results: Any) -> None:
            (result,) = results
            self.sim.record(f"funded {account_id} {amount} ok={result.ok} {result.reason}")

        self.sim.after(
            delay,
            "fund",
            "client",
            lambda: self.call("ledger", "fund", lambda: self.funder.apply([operation]), done),
        )

    def new_customer(self) -> None:
        sim = self.sim
        customer_id = self.next_id("cus")
        self.customers.append(customer_id)
        deps = self.identity.deps
        spec = CustomerSpec(customer_id, "Customer", f"{customer_id}@example.test")
        approve = sim.rng.random() < 0.85

        def created(_view: Any) -> None:
            self.call(
                "identity",
                "submit kyc",
                lambda: identity_use_cases.submit_kyc(
                    deps, self.next_id("kyc"), customer_id, "sim"
                ),
                submitted,
            )

        def submitted(_view: Any) -> None:
            decision = KycDecision.APPROVE if approve else KycDecision.REJECT
            request_id = self.next_id("kyc")
            self.call(
                "identity",
                "review kyc",
                lambda: identity_use_cases.review_kyc(
                    deps, request_id, customer_id, decision, "" if approve else "documents", "sim"
                ),
                lambda _v: None,
            )

        self.call(
            "identity",
            "create customer",
            lambda: identity_use_cases.create_customer(deps, spec),
            created,
        )
        # Its ledger account, with some money on it (as if collected earlier).
        account = customer_account_id(customer_id, CCY)
        opened = AccountSpec(
            account, CCY, debit_normal=False, no_overdraft=True, customer_id=customer_id
        )
        self.call(
            "ledger",
            "open customer account",
            lambda: self.funder.ensure_accounts([opened]),
            lambda _r: None,
        )
        self.fund(account, sim.rng.choice([20_000, 60_000, 100_000]), 0.3)

    def step(self) -> None:
        """One client action, chosen by the seed."""
        sim = self.sim
        actions: list[tuple[float, Callable[[], None]]] = [
            (4, self.payouts),
            (2, self.collection),
            (1, self.refund),
            (1, self.cancel),
            (1.5, self.review),
            (3, self.hold),
            (2, self.resolve),
            (1, self.reverse),
            (2, self.read_as_of),
            (0.3, self.new_customer),
            (0.3, self.reconcile_today),
        ]
        total = sum(weight for weight, _ in actions)
        pick = sim.rng.uniform(0, total)
        for weight, action in actions:
            pick -= weight
            if pick <= 0:
                action()
                return

    # payments ------------------------------------------------------------------------------------

    def _request(self, kind: PaymentKind, customer_id: str, amount: int) -> PaymentRequest:
        return PaymentRequest(
            payment_id=self.next_id("pay"),
            kind=kind,
            customer_id=customer_id,
            amount=amount,
            currency=CCY,
            counterparty=DESTINATION if kind is PaymentKind.PAYOUT else SOURCE,
            requested_by=Requester(MAKER.client_id, None, ""),
        )

    def payouts(self) -> None:
        """A group of creations decided together (the creation batcher's group)."""
        sim = self.sim
        requests = []
        for _ in range(sim.rng.randint(1, 4)):
            customer = sim.rng.choice(self.customers)
            if sim.rng.random() < 0.1:
                customer = self.next_id("cus_unknown")  # identity has never heard of it
            kind = PaymentKind.PAYOUT if sim.rng.random() < 0.8 else PaymentKind.COLLECTION
            amount = sim.rng.choice([500, 2_000, 9_000, 30_000, 45_000])
            requests.append(self._request(kind, customer, amount))
        self.create(requests)

    def collection(self) -> None:
        customer = self.sim.rng.choice(self.customers)
        self.create([self._request(PaymentKind.COLLECTION, customer, 25_000)])

    def create(self, requests: list[PaymentRequest]) -> None:
        def deps() -> Deps:
            return self.payments.deps  # rebuilt when payments restarts

        for request in requests:
            payments_use_cases.check_creation(deps(), request, "destination", MAKER)
            self.seen.intents[request.payment_id] = [request.payment_id]

        def work() -> list[Any]:
            return create_payments(deps(), [Creation(r, "destination") for r in requests])

        def done(outcomes: list[Any]) -> None:
            for request, outcome in zip(requests, outcomes, strict=True):
                self.answered(request.payment_id, outcome)

        def refused(error: DomainError) -> None:
            # The whole group refused: every caller in it is told so.
            for request in requests:
                self.answered(request.payment_id, error)

        self.call("payments", "create payments", work, done, refused)

    def answered(self, payment_id: str, outcome: Any) -> None:
        sim = self.sim
        if isinstance(outcome, Payment):
            first = self.seen.payments.setdefault(payment_id, outcome)
            if (first.id, first.kind, first.amount, first.customer_id) != (
                outcome.id,
                outcome.kind,
                outcome.amount,
                outcome.customer_id,
            ):
                sim.violation(f"replay of {payment_id} differs: {first} / {outcome}")
            sim.record(f"payment {payment_id} {outcome.state.name}")
        elif isinstance(outcome, DomainError):
            if outcome.category in (ErrorCategory.UNAVAILABLE, ErrorCategory.DEADLINE_EXCEEDED):
                return
            before = self.seen.refused.setdefault(payment_id, outcome.reason)
            if before != outcome.reason:
                sim.violation(f"refusal of {payment_id} changed: {before} -> {outcome.reason}")
            sim.record(f"payment {payment_id} refused {outcome.reason}")
        else:
            sim.violation(f"creation of {payment_id} answered {outcome!r}")

    def _some_payment(self, *states: PaymentState) -> Payment | None:
        rows = [p for _, p in sorted(self.payments.db.payments.items()) if p.state in states]
        return self.sim.rng.choice(rows) if rows else None

    def refund(self) -> None:
        original = self._some_payment(PaymentState.SETTLED)
        if original is None or original.kind is not PaymentKind.COLLECTION:
            return
        refund_id = self.next_id("pay_refund")
        amount = self.sim.rng.choice([1_000, 5_000, original.amount])
        self.seen.intents[refund_id] = [refund_id]
        self.call(
            "payments",
            "refund",
            lambda: payments_use_cases.refund_payment(
                self.payments.deps, refund_id, original.id, amount, "customer asked", MAKER
            ),
            lambda p: self.answered(refund_id, p),
            lambda e: self.answered(refund_id, e),
        )

    def cancel(self) -> None:
        target = self._some_payment(
            PaymentState.CREATED,
            PaymentState.IN_REVIEW,
            PaymentState.FUNDS_HELD,
            PaymentState.SUBMITTED,
        )
        if target is not None:
            self.call(
                "payments",
                "cancel",
                lambda: payments_use_cases.cancel_payment(self.payments.deps, target.id, "", MAKER),
                lambda _p: None,
            )

    def review(self) -> None:
        target = self._some_payment(PaymentState.IN_REVIEW)
        if target is None:
            return
        use = (
            payments_use_cases.approve_payment
            if self.sim.rng.random() < 0.7
            else payments_use_cases.reject_payment
        )
        self.call(
            "payments",
            "review",
            lambda: use(self.payments.deps, target.id, "", CHECKER),
            lambda _p: None,
        )

    def review_all(self) -> None:
        for payment_id, payment in sorted(self.payments.db.payments.items()):
            if payment.state is PaymentState.IN_REVIEW:
                self._approve(payment_id)

    def _approve(self, payment_id: str) -> None:
        def work() -> Payment:
            return payments_use_cases.approve_payment(self.payments.deps, payment_id, "", CHECKER)

        self.call("payments", "operator review", work, lambda _p: None)

    def reconcile_today(self) -> None:
        day = self.sim.clock.now().date()
        run_id = self.next_id("rec")
        self.call(
            "payments",
            "reconcile",
            lambda: payments_use_cases.run_reconciliation(
                self.payments.deps, run_id, day.isoformat()
            ),
            lambda _r: None,
        )

    # the ledger's own clients ---------------------------------------------------------------------

    def _transfer_call(
        self, name: str, transfer_id: str, send: Callable[[], Any], target: str = ""
    ) -> None:
        sim = self.sim
        if target:
            self.seen.targets[transfer_id] = target

        def work() -> Any:
            try:
                return send()
            except SimRpcError as error:
                if error.code() in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.INTERNAL,
                ):
                    raise
                from chassis.grpc.status import reason_of

                reason = reason_of(error) or error.code().name
                before = self.seen.transfer_refusals.setdefault(transfer_id, reason)
                if before != reason:
                    sim.violation(f"refusal of {transfer_id} changed: {before} -> {reason}")
                sim.record(f"{name} {transfer_id} refused {reason}")
                return None

        def done(reply: Any) -> None:
            if reply is None:
                return
            transfer = reply.transfer
            first = self.seen.transfers.setdefault(transfer_id, transfer)
            if first.SerializeToString() != transfer.SerializeToString():
                sim.violation(f"replay of {transfer_id} differs")
            sim.record(f"{name} {transfer_id} ok")

        self.call("ledger", name, work, done)

    def hold(self) -> None:
        sim = self.sim
        transfer_id = self.next_id("tr_hold")
        spec = pb.TransferSpec(id=transfer_id)
        amount = sim.rng.choice([1_000, 5_000, 20_000])
        for account, direction in (
            (OPS_SOURCE, pb.DIRECTION_DEBIT),
            (OPS_TARGET, pb.DIRECTION_CREDIT),
        ):
            spec.pending.legs.add(
                account_id=account, direction=direction, amount=amount, currency=CCY
            )
        spec.pending.timeout.FromMilliseconds(sim.rng.choice([300, 1_000, 4_000]))
        self._transfer_call(
            "hold",
            transfer_id,
            lambda: self.ledger_stub.CreateTransfer(pb.CreateTransferRequest(transfer=spec)),
        )

    def _acknowledged(self, prefix: str) -> str | None:
        ids = sorted(t for t in self.seen.transfers if t.startswith(prefix))
        return self.sim.rng.choice(ids) if ids else None

    def resolve(self) -> None:
        hold = self._acknowledged(f"tr_hold_s{self.sim.seed}_")
        if hold is None:
            return
        self._resolve(hold)
        if self.sim.rng.random() < 0.3:
            # Two clients race on one hold.
            self._resolve(hold)

    def _resolve(self, hold: str) -> None:
        transfer_id = self.next_id("tr_resolve")
        if self.sim.rng.random() < 0.6:
            request: Any = pb.PostPendingTransferRequest(
                transfer_id=transfer_id, pending_transfer_id=hold
            )
            self._transfer_call(
                "post", transfer_id, lambda: self.ledger_stub.PostPendingTransfer(request), hold
            )
        else:
            void = pb.VoidPendingTransferRequest(transfer_id=transfer_id, pending_transfer_id=hold)
            self._transfer_call(
                "void", transfer_id, lambda: self.ledger_stub.VoidPendingTransfer(void), hold
            )

    def reverse(self) -> None:
        target = self._acknowledged(f"tr_resolve_s{self.sim.seed}_")
        if target is None:
            return
        transfer_id = self.next_id("tr_reverse")
        request = pb.ReverseTransferRequest(transfer_id=transfer_id, reversed_transfer_id=target)
        self._transfer_call(
            "reverse", transfer_id, lambda: self.ledger_stub.ReverseTransfer(request), target
        )

    def read_as_of(self) -> None:
        sim = self.sim
        account = sim.rng.choice([OPS_SOURCE, OPS_TARGET])
        # Now, or a moment ago: instants entries may still be stamped at.
        instant = sim.clock.now() - timedelta(milliseconds=sim.rng.choice([0, 0, 1, 50]))
        request = pb.GetBalanceRequest(account_id=account)
        set_timestamp(request.as_of, instant)
        key = (account, instant.isoformat())

        def done(reply: Any) -> None:
            self.check_as_of(key, reply.balance)

        def work() -> Any:
            try:
                return self.ledger_stub.GetBalance(request)
            except SimRpcError as error:
                if error.code() is grpc.StatusCode.NOT_FOUND:
                    return None
                raise

        self.call("ledger", "as-of read", work, lambda r: done(r) if r is not None else None)
        if sim.rng.random() < 0.5:
            # Read, then move money at once: the instant just answered must not change.
            self.hold()

    def check_as_of(self, key: tuple[str, str], balance: pb.Balance) -> None:
        first = self.seen.as_of.setdefault(key, balance)
        if first.SerializeToString() != balance.SerializeToString():
            self.sim.violation(
                f"as-of balance of {key[0]} at {key[1]} changed: "
                f"{first.posted}/{first.pending} -> {balance.posted}/{balance.pending}"
            )

    # --- the run ---

    def run(self) -> None:
        sim = self.sim
        self.setup()
        sim.run_until(START + timedelta(seconds=1))
        end = START + timedelta(seconds=WORKLOAD_SECONDS)
        clients = sim.rng.randint(2, 4)
        for _ in range(clients):
            sim.every(0.25, "client", "client", self.step, jitter=0.9)
        sim.run_until(end)
        # The clients stop; so do the faults. What remains must settle by itself.
        sim.process("client").epoch += 1
        sim.faults_enabled = False
        # An operator reviews what waits for a reviewer (in review is resolvable, not stuck).
        sim.every(1.0, "operator reviews", "operator", self.review_all)
        for process in sorted(sim.processes.values(), key=lambda p: p.name):
            if not process.up:
                sim.run_until(sim.clock.now() + timedelta(seconds=3))
        sim.after(5.0, "bank end of day", "bank", self.bank.settle_pending)
        sim.run_until(end + timedelta(seconds=DRAIN_SECONDS), stop=self.settled)
        # The next morning: yesterday's statement is reconciled.
        tomorrow = START.replace(hour=6) + timedelta(days=1)
        sim.jump(tomorrow)
        self.bank.settle_pending()
        sim.run_until(tomorrow + timedelta(seconds=60), stop=self.settled)
        self.reports = []
        for day in sorted({START.date(), sim.clock.now().date()}):
            self.reports.append(
                payments_use_cases.run_reconciliation(
                    self.payments.deps, f"rec_final_{day:%Y%m%d}", day.isoformat()
                )
            )
        sim.run_until(sim.clock.now() + timedelta(seconds=5))
        checkers.final(self)

    def settled(self) -> bool:
        return (
            self.pubsub.drained()
            and self.payments.db.cursors.get(rounds.FEED, 0) == self.bank.feed_length()
            and all(
                p.state in TERMINAL or p.state is PaymentState.SETTLED
                for p in self.payments.db.payments.values()
            )
            and all(p.next_action_at is None for p in self.payments.db.payments.values())
            and self.payments.db.relay_mark == len(self.payments.db.outbox)
            and self.ledger.relay_mark == len(self.ledger.db.events)
            and self.identity.relay_mark == len(self.identity.db.events)
        )


class _KycApp:
    """What payments' KYC handlers need of the service: its clock, and a unit of work joined
    to the subscriber's inbox transaction (here: one that commits the event's inbox row)."""

    def __init__(self, payments: PaymentsProcess) -> None:
        self._payments = payments

    @property
    def deps(self) -> Any:
        return self._payments.deps

    def joined_uow(self, connection: Any) -> Any:
        return self._payments.uow(inbox_event=str(connection))


def run_seed(seed: int, faults: Faults | None = None) -> World:
    world = World(seed, faults)
    world.sim.record(f"seed {seed} faults {world.sim.faults}")
    world.run()
    return world
