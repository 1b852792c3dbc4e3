"""In-memory adapters: payments' storage, the ledger, identity, a bank and a clock, no I/O.

For the use cases' fast tests and for simulations. Each keeps the promises its
port makes, as the real adapter does:

- ``MemoryDatabase`` with ``MemoryUnitOfWork``: a transaction reads what was
  committed and its own writes; its commit makes every write and the events of
  the aggregates it saw durable together (``outbox``), and leaving it without a
  commit (an exception) leaves nothing behind. Transactions run one at a time,
  as if each locked everything it touched: none loses a race. A payment saved
  over a newer version raises ``StaleWrite``; an id added twice is a lost race
  (``RetryTransaction``, the retry replays it). Texts are cut to the columns'
  lengths, and a payment is read without its history unless asked, as in SQL.
- ``MemoryLedger``: each operation under its transfer id is applied once;
  asking again replays the first answer, a refusal too. Holds, posts, voids,
  movements and reversals (with a shortfall account) move four running sums per
  account, and an account that must not be overdrawn refuses what would.
- ``MemoryBank``: a submission's idempotency key makes it one payment however
  often it is sent; the bank settles, fails and returns payments when told to,
  and reports each change on its feed and its statement of the day.
- ``MemoryIdentity``: customers and their KYC status.

Each fake can be made unreachable (``down``) or to lose its answers after
acting (``lose_answers``), and ``MemoryDatabase.before_write`` lets a test fail
a write.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from chassis.kernel.clock import Clock
from chassis.kernel.errors import RetryTransaction
from chassis.kernel.ids import is_valid_id
from chassis.kernel.money import MAX_AMOUNT
from chassis.kernel.uow import TracksAggregates

from payments.domain.bank import (
    BankEvent,
    BankInstruction,
    BankPaymentView,
    LookupOutcome,
    LookupResult,
    SubmitOutcome,
    SubmitResult,
)
from payments.domain.customers import CustomerErasure, CustomerKyc
from payments.domain.ledger_plan import (
    AccountSpec,
    LedgerLeg,
    LedgerOperation,
    LedgerResult,
    OpKind,
    clearing_account_id,
    customer_account_id,
)
from payments.domain.limits import RunningTotals
from payments.domain.model import BankAccount, BankStatus, LedgerStep, Payment, Transition
from payments.domain.monitoring import Activity, Alert, AlertRule, AlertState, RecentPayment
from payments.domain.policy import Policy
from payments.domain.reconciliation import ReconciliationReport, StatementLine
from payments.domain.sanctions import OPEN_STATES, SCREENED_KINDS
from payments.domain.states import UNSUCCESSFUL, PaymentKind, PaymentState
from payments.service_layer.ports import (
    BankUnavailable,
    IdentityUnavailable,
    LedgerRequestRefused,
    LedgerUnavailable,
    StaleWrite,
)
from payments.service_layer.unit_of_work import PaymentsUnitOfWork
from payments.service_layer.use_cases import Deps

# The columns' lengths (``payments.adapters.tables``): longer texts are cut, as in SQL.
_REASON = 64
_LEDGER_ERROR = 200


class ManualClock:
    """A clock that moves only when told."""

    def __init__(self, now: datetime | None = None) -> None:
        self._now = now or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


# --- payments' storage -------------------------------------------------------------------------


class MemoryDatabase:
    """What payments' database holds once committed; the units of work on it share it."""

    def __init__(self) -> None:
        # Payments as stored: their whole history, no events, no refunds' sum.
        self.payments: dict[str, Payment] = {}
        self.customers: dict[str, CustomerKyc] = {}
        # When each customer's row was last written (``updated_at``).
        self.customers_updated_at: dict[str, datetime] = {}
        self.cursors: dict[str, int] = {}
        self.runs: dict[str, ReconciliationReport] = {}
        self.alerts: dict[str, Alert] = {}
        # The events of every commit, in order: what the outbox table would hold.
        self.outbox: list[Any] = []
        self.commits = 0
        # Called with ("add" | "save", payment ids) before a write: a test raises to fail it.
        self.before_write: Callable[[str, Sequence[str]], None] = lambda _op, _ids: None
        # Held by the unit of work open now (reentrant: a use case may open one inside one).
        self.lock = threading.RLock()


def _stored(payment: Payment, history: Sequence[Transition], version: int) -> Payment:
    """The payment as a row and its transitions would keep it."""
    row = copy.copy(payment)
    row.reason = payment.reason[:_REASON]
    row.ledger_error = payment.ledger_error[:_LEDGER_ERROR]
    row.history = [dataclasses.replace(t, reason=t.reason[:_REASON]) for t in history]
    row.new_transitions = []
    row.events = []
    row.alerts = []
    row.refunded_amount = 0
    row.version = version
    return row


class MemoryPaymentsRepository(TracksAggregates):
    """``service_layer.ports.PaymentsRepository`` on a ``MemoryDatabase``, inside one unit of
    work: what it writes stays its own until ``flush`` (the commit)."""

    def __init__(self, database: MemoryDatabase) -> None:
        super().__init__()
        self._db = database
        self._payments: dict[str, Payment] = {}
        self._customers: dict[str, tuple[CustomerKyc, datetime]] = {}
        self._cursors: dict[str, int] = {}
        self._runs: dict[str, ReconciliationReport] = {}
        self._alerts: dict[str, Alert] = {}

    def flush(self) -> None:
        """Make this transaction's writes the database's."""
        db = self._db
        db.payments.update(self._payments)
        for customer_id, (kyc, at) in self._customers.items():
            db.customers[customer_id] = kyc
            db.customers_updated_at[customer_id] = at
        db.cursors.update(self._cursors)
        db.runs.update(self._runs)
        db.alerts.update(self._alerts)
        self._payments, self._customers, self._cursors, self._runs = {}, {}, {}, {}
        self._alerts = {}

    # --- payments -------------------------------------------------------------------------

    def _row(self, payment_id: str) -> Payment | None:
        return self._payments.get(payment_id) or self._db.payments.get(payment_id)

    def _rows(self) -> list[Payment]:
        return list({**self._db.payments, **self._payments}.values())

    def _load(self, row: Payment, *, history: bool = False) -> Payment:
        payment = copy.copy(row)
        payment.history = list(row.history) if history else []
        payment.new_transitions = []
        payment.events = []
        return payment

    def get(self, payment_id: str, *, lock: bool = False, history: bool = False) -> Payment | None:
        row = self._row(payment_id)
        if row is None:
            return None
        payment = self.track(self._load(row, history=history))
        if payment.kind is PaymentKind.COLLECTION:
            payment.refunded_amount = self.refunded_amount(payment_id)
        return payment

    def get_many(self, payment_ids: Iterable[str], *, lock: bool = False) -> dict[str, Payment]:
        rows = (self._row(payment_id) for payment_id in sorted(set(payment_ids)))
        return {row.id: self.track(self._load(row)) for row in rows if row is not None}

    def history(self, payment_id: str) -> list[Transition]:
        row = self._row(payment_id)
        return list(row.history) if row is not None else []

    def add(self, payment: Payment) -> None:
        self.add_all([payment])

    def add_all(self, batch: Sequence[Payment]) -> None:
        if not batch:
            return
        ids = [p.id for p in batch]
        self._db.before_write("add", ids)
        taken = [i for i in ids if self._row(i) is not None]
        if taken or len(set(ids)) != len(ids):
            # A unique violation: someone inserted it first; the retry finds it and replays.
            raise RetryTransaction(f"payments exist already: {', '.join(taken or ids)}")
        for payment in batch:
            self.track(payment)
            self._payments[payment.id] = _stored(payment, payment.new_transitions, payment.version)
            payment.new_transitions = []

    def save(self, payment: Payment) -> None:
        self.save_all([payment])

    def save_all(self, batch: Sequence[Payment]) -> None:
        if not batch:
            return
        self._db.before_write("save", [p.id for p in batch])
        rows = [self._row(p.id) for p in batch]
        if any(row is None or row.version != p.version for row, p in zip(rows, batch, strict=True)):
            raise StaleWrite(",".join(p.id for p in batch))
        for row, payment in zip(rows, batch, strict=True):
            assert row is not None
            history = [*row.history, *payment.new_transitions]
            self._payments[payment.id] = _stored(payment, history, payment.version + 1)
            payment.version += 1
            payment.new_transitions = []

    def erase_customer(self, erasure: CustomerErasure) -> tuple[int, bool]:
        # No data keys here: the counterparties are blanked, as the SQL rows read once their
        # key is gone (a customer's key exists while a payment holds its data).
        self.track(erasure)
        erased = BankAccount("", "")
        held = [
            row
            for row in self._rows()
            if row.customer_id == erasure.customer_id and row.counterparty != erased
        ]
        self._db.before_write("save", [row.id for row in held])
        for row in held:
            blank = copy.copy(row)
            blank.counterparty = erased
            self._payments[row.id] = blank
        return len(held), bool(held)

    def claim_due(self, now: datetime, limit: int) -> list[Payment]:
        due = [
            row
            for row in self._rows()
            if row.next_action_at is not None
            and row.next_action_at <= now
            and (row.leased_until is None or row.leased_until <= now)
        ]
        due.sort(key=lambda row: row.next_action_at or now)
        return [self.track(self._load(row)) for row in due[:limit]]

    def velocities(
        self, keys: Iterable[tuple[str, str]], since: datetime
    ) -> dict[tuple[str, str], tuple[int, int]]:
        pairs = set(keys)
        if not pairs:
            return {}
        customers = {customer for customer, _ in pairs}
        counts: Counter[str] = Counter()
        amounts: Counter[tuple[str, str]] = Counter()
        for row in self._rows():
            if (
                row.customer_id in customers
                and row.created_at >= since
                and row.kind in (PaymentKind.PAYOUT, PaymentKind.COLLECTION)
                and row.state is not PaymentState.DECLINED
            ):
                counts[row.customer_id] += 1
                amounts[(row.customer_id, row.currency)] += row.amount
        return {(c, ccy): (counts[c], amounts[(c, ccy)]) for c, ccy in pairs}

    def refunded_amount(self, original_payment_id: str) -> int:
        return sum(
            row.amount
            for row in self._rows()
            if row.original_payment_id == original_payment_id
            and row.kind is PaymentKind.REFUND
            and row.state not in UNSUCCESSFUL
        )

    def page(
        self, after: str | None, limit: int, customer_id: str, state: PaymentState | None
    ) -> list[Payment]:
        rows = sorted(self._rows(), key=lambda row: row.id)
        chosen = [
            row
            for row in rows
            if (not after or row.id > after)
            and (not customer_id or row.customer_id == customer_id)
            and (state is None or row.state is state)
        ]
        return [self._load(row) for row in chosen[:limit]]

    def open_for_screening(self, after: str, limit: int) -> list[str]:
        found = sorted(
            row.id
            for row in self._rows()
            if row.state in OPEN_STATES and row.kind in SCREENED_KINDS and row.id > after
        )
        return found[:limit]

    def open_of_customer(self, customer_id: str) -> list[str]:
        return sorted(
            row.id
            for row in self._rows()
            if row.customer_id == customer_id and row.state in OPEN_STATES
        )

    def booked_with_bank_on(self, day: date, start: datetime, end: datetime) -> list[Payment]:
        def within(at: datetime | None) -> bool:
            return at is not None and start <= at < end

        return [
            self._load(row)
            for row in self._rows()
            if within(row.bank_settled_at) or within(row.bank_returned_at)
        ]

    def count_by_state(self) -> dict[PaymentState, int]:
        return dict(Counter(row.state for row in self._rows()))

    def count_stuck(self, min_retries: int) -> int:
        return sum(
            1
            for row in self._rows()
            if row.next_action_at is not None and row.retries >= min_retries
        )

    # --- monitoring ----------------------------------------------------------------------------

    @staticmethod
    def _tag(customer_id: str, account_number: str) -> str:
        # No data keys here: a digest of the customer and the number stands in for the keyed one.
        normalized = "".join(c for c in account_number.upper() if c.isalnum())
        if not normalized:
            return ""
        return hashlib.sha256(f"{customer_id}|{normalized}".encode()).hexdigest()[:32]

    def counterparty_tags(self, accounts: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return {(c, a): self._tag(c, a) for c, a in set(accounts)}

    def activities(
        self, tags: Mapping[str, Collection[str]], since: datetime, window_start: datetime
    ) -> dict[str, Activity]:
        live = [
            row
            for row in self._rows()
            if row.customer_id in tags
            and row.kind in (PaymentKind.PAYOUT, PaymentKind.COLLECTION)
            and row.state is not PaymentState.DECLINED
        ]
        alerts = {**self._db.alerts, **self._alerts}.values()
        found: dict[str, Activity] = {}
        for customer in sorted(tags):
            mine = [row for row in live if row.customer_id == customer]
            recent = tuple(
                RecentPayment(
                    row.id,
                    row.kind,
                    row.amount,
                    row.currency,
                    row.created_at,
                    self._tag(customer, row.counterparty.account_number),
                )
                for row in sorted(mine, key=lambda r: (r.created_at, r.id))
                if row.created_at >= since
            )
            asked = {t for t in [*tags[customer], *(p.counterparty for p in recent)] if t}
            known = {
                self._tag(customer, row.counterparty.account_number)
                for row in mine
                if row.kind is PaymentKind.PAYOUT and row.created_at < window_start
            } & asked
            open_rules = {
                a.rule for a in alerts if a.customer_id == customer and a.state is AlertState.OPEN
            }
            found[customer] = Activity(recent, frozenset(known), frozenset(open_rules))
        return found

    def add_alerts(self, alerts: Sequence[Alert]) -> None:
        for alert in alerts:
            if self.get_alert(alert.id) is not None:
                raise RetryTransaction(f"alert {alert.id} exists already")
            self._alerts[alert.id] = copy.copy(alert)

    def get_alert(self, alert_id: str, *, lock: bool = False) -> Alert | None:
        alert = self._alerts.get(alert_id) or self._db.alerts.get(alert_id)
        return copy.copy(alert) if alert is not None else None

    def save_alert(self, alert: Alert) -> None:
        stored = self.get_alert(alert.id)
        if stored is None or stored.version != alert.version:
            raise StaleWrite(alert.id)
        alert.version += 1
        self._alerts[alert.id] = copy.copy(alert)

    def alert_page(
        self,
        after: str | None,
        limit: int,
        customer_id: str,
        state: AlertState | None,
        rule: AlertRule | None,
    ) -> list[Alert]:
        every = sorted({**self._db.alerts, **self._alerts}.values(), key=lambda a: a.id)
        chosen = [
            copy.copy(a)
            for a in every
            if (not after or a.id > after)
            and (not customer_id or a.customer_id == customer_id)
            and (state is None or a.state is state)
            and (rule is None or a.rule is rule)
        ]
        return chosen[:limit]

    # --- the KYC projection -------------------------------------------------------------------

    def customer(self, customer_id: str, *, lock: bool = False) -> CustomerKyc | None:
        written = self._customers.get(customer_id)
        return written[0] if written is not None else self._db.customers.get(customer_id)

    def customers(
        self, customer_ids: Iterable[str], *, lock: bool = False
    ) -> dict[str, CustomerKyc]:
        found = {c: self.customer(c) for c in sorted(set(customer_ids))}
        return {c: kyc for c, kyc in found.items() if kyc is not None}

    def upsert_customer(self, kyc: CustomerKyc, now: datetime) -> bool:
        known = self.customer(kyc.customer_id)
        if known is not None and known.kyc_version >= kyc.kyc_version:
            return False
        if kyc.customer_since is None and known is not None:
            kyc = dataclasses.replace(kyc, customer_since=known.customer_since)
        self._customers[kyc.customer_id] = (kyc, now)
        return True

    # --- the bank feed cursor ---------------------------------------------------------------

    def cursor(self, name: str) -> int:
        return self._cursors.get(name, self._db.cursors.get(name, 0))

    def set_cursor(self, name: str, position: int) -> None:
        self._cursors[name] = position

    # --- reconciliation runs ---------------------------------------------------------------------

    def get_run(self, run_id: str) -> ReconciliationReport | None:
        run = self._runs.get(run_id) or self._db.runs.get(run_id)
        return dataclasses.replace(run, events=[]) if run is not None else None

    def add_run(self, report: ReconciliationReport) -> None:
        if self.get_run(report.run_id) is not None:
            raise RetryTransaction(f"reconciliation run {report.run_id} exists already")
        self.track(report)
        self._runs[report.run_id] = dataclasses.replace(report, events=[])


class MemoryUnitOfWork(PaymentsUnitOfWork):
    """One transaction on a ``MemoryDatabase``, the only one open on it while it lasts."""

    def __init__(
        self,
        database: MemoryDatabase,
        on_commit: Callable[[Sequence[Any]], None] | None = None,
    ) -> None:
        super().__init__(on_commit)
        self._db = database
        self._repository: MemoryPaymentsRepository | None = None

    def _begin(self) -> None:
        self._db.lock.acquire()
        self._repository = MemoryPaymentsRepository(self._db)
        self.payments = self._repository

    def _commit(self, events: Sequence[Any]) -> None:
        assert self._repository is not None
        self._repository.flush()
        self._db.outbox.extend(events)
        self._db.commits += 1

    def rollback(self) -> None:
        if self._repository is None:
            return
        # What was written since the commit (or at all) is forgotten with the repository.
        self._repository = None
        self._db.lock.release()


# --- the ledger -------------------------------------------------------------------------------

# Reversible: what posted money (a hold's posting keeps the hold's legs).
_POSTING = frozenset({OpKind.MOVEMENT, OpKind.POST, OpKind.REVERSE})
_ALREADY = {OpKind.POST: "ALREADY_POSTED", OpKind.VOID: "ALREADY_VOIDED"}


class _Refused(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class _Account:
    spec: AccountSpec
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    def add(self, leg: LedgerLeg, *, pending: bool, sign: int = 1) -> None:
        amount = sign * leg.amount
        if pending and leg.debit:
            self.debits_pending += amount
        elif pending:
            self.credits_pending += amount
        elif leg.debit:
            self.debits_posted += amount
        else:
            self.credits_posted += amount

    def room_for_debits(self) -> int | None:
        """How much more it may be debited now; None when nothing limits it."""
        if not self.spec.no_overdraft:
            return None
        return self.credits_posted - self.debits_posted - self.debits_pending

    def totals(self) -> RunningTotals:
        return RunningTotals(
            self.debits_posted, self.credits_posted, self.debits_pending, self.credits_pending
        )


@dataclass
class _Transfer:
    operation: LedgerOperation
    result: LedgerResult
    # What it moved: for a hold, what it holds (and a post posts); for the rest, what it posted.
    legs: tuple[LedgerLeg, ...] = ()
    resolved_by: OpKind | None = None
    reversed: bool = False


class MemoryLedger:
    """``service_layer.ports.LedgerPort`` in memory (see the module's doc)."""

    def __init__(self) -> None:
        self.accounts: dict[str, _Account] = {}
        self.transfers: dict[str, _Transfer] = {}
        # The transfer ids of every request that reached the ledger, in order.
        self.requests: list[list[str]] = []
        self.down = False
        self.lose_answers = False
        self._lock = threading.Lock()

    # --- the port -----------------------------------------------------------------------------

    def ensure_accounts(self, specs: Sequence[AccountSpec]) -> None:
        self._reachable()
        with self._lock:
            for spec in specs:
                self.accounts.setdefault(spec.id, _Account(spec))

    def apply(self, operations: Sequence[LedgerOperation]) -> list[LedgerResult]:
        self._reachable()
        with self._lock:
            sent = [op for op in operations if _expressible(op)]
            if len(sent) > 1 and any(_malformed(op) for op in sent):
                raise LedgerRequestRefused("a transfer of the request is malformed")
            if sent:
                self.requests.append([op.transfer_id for op in sent])
            results = [self._apply(op) for op in operations]
        if self.lose_answers:
            raise LedgerUnavailable("the answer was lost on its way back")
        return results

    def running_totals(self, account_ids: Collection[str]) -> dict[str, RunningTotals]:
        self._reachable()
        with self._lock:
            return {
                a: self.accounts[a].totals() for a in sorted(set(account_ids)) if a in self.accounts
            }

    def clearing_bookings(self, transfer_ids: Collection[str]) -> dict[str, int]:
        self._reachable()
        bookings: dict[str, int] = {}
        with self._lock:
            for transfer_id in set(transfer_ids):
                transfer = self.transfers.get(transfer_id)
                if transfer is None or not transfer.result.ok:
                    continue
                if transfer.operation.kind not in _POSTING:
                    continue
                legs = [
                    leg
                    for leg in transfer.legs
                    if leg.account_id == clearing_account_id(leg.currency)
                ]
                if legs:
                    bookings[transfer_id] = sum(
                        leg.amount if leg.debit else -leg.amount for leg in legs
                    )
        return bookings

    # --- for tests and simulations ---------------------------------------------------------

    def available(self, account_id: str) -> int:
        """A credit-normal account's posted balance less what is held on it."""
        account = self.accounts[account_id]
        return account.credits_posted - account.debits_posted - account.debits_pending

    def deposit(self, customer_id: str, currency: str, amount: int, transfer_id: str) -> None:
        """Money on a customer's account from the bank clearing account (as a collection)."""
        customer = customer_account_id(customer_id, currency)
        clearing = clearing_account_id(currency)
        self.ensure_accounts(
            [
                AccountSpec(
                    customer,
                    currency,
                    debit_normal=False,
                    no_overdraft=True,
                    customer_id=customer_id,
                ),
                AccountSpec(clearing, currency, debit_normal=True),
            ]
        )
        legs = (
            LedgerLeg(clearing, True, amount, currency),
            LedgerLeg(customer, False, amount, currency),
        )
        operation = LedgerOperation(
            transfer_id, LedgerStep.CREDIT, transfer_id, OpKind.MOVEMENT, legs
        )
        (result,) = self.apply([operation])
        assert result.ok, result

    # --- booking ------------------------------------------------------------------------------

    def _reachable(self) -> None:
        if self.down:
            raise LedgerUnavailable("the ledger is down")

    def _apply(self, operation: LedgerOperation) -> LedgerResult:
        tid = operation.transfer_id
        if not _expressible(operation):
            # Refused by the client, as over gRPC: no int64 carries it.
            return LedgerResult(tid, False, "INVALID_LEDGER_OPERATION", "an amount past int64")
        if _malformed(operation):
            return LedgerResult(tid, False, "INVALID_ARGUMENT", "a malformed id")
        known = self.transfers.get(tid)
        if known is not None:
            if known.operation != operation:
                return LedgerResult(
                    tid,
                    False,
                    "IDEMPOTENCY_KEY_REUSED",
                    f"transfer {tid} exists with other content",
                )
            return known.result
        # A refusal leaves everything as it was: the sums, and the transfer acted on.
        sums = {a: dataclasses.replace(account) for a, account in self.accounts.items()}
        target = self.transfers.get(operation.target_transfer_id)
        flags = dataclasses.replace(target) if target is not None else None
        try:
            legs = self._book(operation)
            self._check_limits(legs)
        except _Refused as refusal:
            self.accounts.update(sums)
            if target is not None and flags is not None:
                target.resolved_by, target.reversed = flags.resolved_by, flags.reversed
            result = LedgerResult(tid, False, refusal.reason, refusal.message)
            self.transfers[tid] = _Transfer(operation, result)
            return result
        result = LedgerResult(tid, True)
        self.transfers[tid] = _Transfer(operation, result, legs)
        return result

    def _account(self, leg: LedgerLeg) -> _Account:
        account = self.accounts.get(leg.account_id)
        if account is None:
            raise _Refused("ACCOUNT_NOT_FOUND", f"account {leg.account_id} does not exist")
        if account.spec.currency != leg.currency:
            raise _Refused("CURRENCY_MISMATCH", f"account {leg.account_id} has another currency")
        return account

    def _book(self, operation: LedgerOperation) -> tuple[LedgerLeg, ...]:
        kind = operation.kind
        if kind in (OpKind.PENDING, OpKind.MOVEMENT):
            accounts = [self._account(leg) for leg in operation.legs]
            for leg, account in zip(operation.legs, accounts, strict=True):
                account.add(leg, pending=kind is OpKind.PENDING)
            return operation.legs
        if kind in (OpKind.POST, OpKind.VOID):
            hold = self._target(operation.target_transfer_id, "PENDING_TRANSFER_NOT_FOUND")
            if hold.operation.kind is not OpKind.PENDING:
                raise _Refused(
                    "TRANSFER_NOT_PENDING", f"{hold.operation.transfer_id} is not a hold"
                )
            if hold.resolved_by is not None:
                raise _Refused(_ALREADY[hold.resolved_by], f"{hold.operation.transfer_id} is done")
            for leg in hold.legs:
                account = self._account(leg)
                account.add(leg, pending=True, sign=-1)
                if kind is OpKind.POST:
                    account.add(leg, pending=False)
            hold.resolved_by = kind
            return hold.legs
        original = self._target(operation.target_transfer_id, "TRANSFER_NOT_FOUND")
        if original.operation.kind not in (OpKind.MOVEMENT, OpKind.POST):
            raise _Refused("TRANSFER_NOT_REVERSIBLE", f"{original.operation.transfer_id}")
        if original.reversed:
            raise _Refused("ALREADY_REVERSED", f"{original.operation.transfer_id} was reversed")
        legs = tuple(dataclasses.replace(leg, debit=not leg.debit) for leg in original.legs)
        if operation.shortfall_account_id:
            legs = self._spill(legs, operation.shortfall_account_id)
        for leg in legs:
            self._account(leg).add(leg, pending=False)
        original.reversed = True
        return legs

    def _target(self, transfer_id: str, missing: str) -> _Transfer:
        transfer = self.transfers.get(transfer_id)
        if transfer is None or not transfer.result.ok:
            raise _Refused(missing, f"transfer {transfer_id} does not exist")
        return transfer

    def _spill(self, legs: tuple[LedgerLeg, ...], shortfall_id: str) -> tuple[LedgerLeg, ...]:
        """What a limited account cannot give back goes to the shortfall account instead."""
        if shortfall_id not in self.accounts:
            raise _Refused("ACCOUNT_NOT_FOUND", f"account {shortfall_id} does not exist")
        kept: list[LedgerLeg] = []
        spilled: dict[str, int] = {}
        for leg in legs:
            room = self._account(leg).room_for_debits() if leg.debit else None
            if room is None or leg.account_id == shortfall_id:
                kept.append(leg)
                continue
            covered = min(max(0, room), leg.amount)
            if covered:
                kept.append(dataclasses.replace(leg, amount=covered))
            if covered < leg.amount:
                spilled[leg.currency] = spilled.get(leg.currency, 0) + leg.amount - covered
        extra = [LedgerLeg(shortfall_id, True, amount, ccy) for ccy, amount in spilled.items()]
        return (*kept, *extra)

    def _check_limits(self, legs: Iterable[LedgerLeg]) -> None:
        for account_id in {leg.account_id for leg in legs}:
            room = self.accounts[account_id].room_for_debits()
            if room is not None and room < 0:
                raise _Refused("INSUFFICIENT_FUNDS", f"account {account_id} would be overdrawn")


def _expressible(operation: LedgerOperation) -> bool:
    return all(0 <= leg.amount <= MAX_AMOUNT for leg in operation.legs)


def _malformed(operation: LedgerOperation) -> bool:
    """An id the ledger's contract refuses (a whole request of several fails with it)."""
    ids = [leg.account_id for leg in operation.legs]
    if operation.shortfall_account_id:
        ids.append(operation.shortfall_account_id)
    return not is_valid_id(operation.transfer_id, "tr") or not all(
        is_valid_id(account_id, "acct") for account_id in ids
    )


# --- identity -----------------------------------------------------------------------------------


class MemoryIdentity:
    """``service_layer.ports.IdentityPort`` in memory: the customers identity knows."""

    def __init__(self) -> None:
        self.customers: dict[str, CustomerKyc] = {}
        # Every customer id asked about, in order.
        self.asked: list[str] = []
        self.down = False

    def add(
        self,
        customer_id: str,
        kyc_status: str = "VERIFIED",
        *,
        since: datetime | None = None,
        version: int = 1,
    ) -> CustomerKyc:
        kyc = CustomerKyc(customer_id, kyc_status, version, since)
        self.customers[customer_id] = kyc
        return kyc

    def get_customer(self, customer_id: str) -> CustomerKyc | None:
        if self.down:
            raise IdentityUnavailable("identity is down")
        self.asked.append(customer_id)
        return self.customers.get(customer_id)


# --- a bank -------------------------------------------------------------------------------------


@dataclass
class _BankPayment:
    id: str
    instruction: BankInstruction
    status: BankStatus = BankStatus.PENDING
    failure_code: str = ""
    settled_at: datetime | None = None
    returned_at: datetime | None = None

    def view(self) -> BankPaymentView:
        return BankPaymentView(
            self.id,
            self.instruction.reference,
            self.status,
            self.instruction.amount,
            self.instruction.currency,
            self.failure_code,
            self.settled_at,
            self.returned_at,
        )


@dataclass(frozen=True, slots=True)
class _Line:
    day: date
    line: StatementLine


class MemoryBank:
    """``service_layer.ports.BankGateway`` in memory (see the module's doc); ``clock`` dates
    the bank's settlements and returns, and so its statements."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.payments: dict[str, _BankPayment] = {}  # by idempotency key
        # Every submission that reached the bank (replays too), by idempotency key.
        self.submissions: list[str] = []
        self.closed_accounts: set[str] = set()
        self.down = False
        self.lose_answers = False
        self._feed: list[tuple[str, BankStatus]] = []  # (key, status); sequence = index + 1
        self._lines: list[_Line] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # --- the port -----------------------------------------------------------------------------

    def submit(self, instruction: BankInstruction) -> SubmitOutcome:
        if self.down:
            return SubmitOutcome(SubmitResult.NOT_SENT, code="ConnectError")
        with self._lock:
            self.submissions.append(instruction.idempotency_key)
            if instruction.counterparty.account_number in self.closed_accounts:
                return SubmitOutcome(SubmitResult.REFUSED, code="account_closed")
            known = self.payments.get(instruction.idempotency_key)
            if known is not None and known.instruction != instruction:
                return SubmitOutcome(SubmitResult.REFUSED, code="idempotency_key_reused")
            if known is None:
                known = _BankPayment(f"bpm_{next(self._ids):08d}", instruction)
                self.payments[instruction.idempotency_key] = known
                self._feed.append((instruction.idempotency_key, BankStatus.PENDING))
            view = known.view()
        if self.lose_answers:
            return SubmitOutcome(SubmitResult.UNKNOWN, code="ReadTimeout")
        return SubmitOutcome(SubmitResult.ACCEPTED, payment=view)

    def lookup(self, idempotency_key: str) -> LookupOutcome:
        if self.down:
            return LookupOutcome(LookupResult.UNKNOWN)
        with self._lock:
            known = self.payments.get(idempotency_key)
            if known is None:
                return LookupOutcome(LookupResult.NOT_FOUND)
            return LookupOutcome(LookupResult.FOUND, known.view())

    def events(self, after: int, wait: float) -> tuple[list[BankEvent], int]:
        """Never waits: what is on the feed now."""
        if self.down:
            raise BankUnavailable("the bank is down")
        with self._lock:
            page = list(enumerate(self._feed[after : after + 1000], start=after + 1))
            events = [
                BankEvent(sequence, status, self.payments[key].view())
                for sequence, (key, status) in page
            ]
        return events, events[-1].sequence if events else after

    def statement(self, day: date) -> list[StatementLine]:
        if self.down:
            raise BankUnavailable("the bank is down")
        with self._lock:
            return [booked.line for booked in self._lines if booked.day == day]

    # --- the bank's side ------------------------------------------------------------------------

    def settle(self, reference: str) -> None:
        self._change(reference, BankStatus.SETTLED)

    def fail(self, reference: str, code: str = "insufficient_funds") -> None:
        self._change(reference, BankStatus.FAILED, code)

    def return_payment(self, reference: str) -> None:
        self._change(reference, BankStatus.RETURNED)

    def settle_all(self) -> int:
        """Settle every pending payment; returns how many."""
        with self._lock:
            pending = [k for k, p in self.payments.items() if p.status is BankStatus.PENDING]
        for key in pending:
            self.settle(key)
        return len(pending)

    def _change(self, key: str, status: BankStatus, code: str = "") -> None:
        now = self._clock.now()
        with self._lock:
            payment = self.payments[key]
            allowed = {
                BankStatus.SETTLED: BankStatus.PENDING,
                BankStatus.FAILED: BankStatus.PENDING,
                BankStatus.RETURNED: BankStatus.SETTLED,
            }
            if payment.status is not allowed[status]:
                raise ValueError(f"a {payment.status.value} payment cannot become {status.value}")
            payment.status = status
            payment.failure_code = code
            if status is BankStatus.SETTLED:
                payment.settled_at = now
            if status is BankStatus.RETURNED:
                payment.returned_at = now
            if status is not BankStatus.FAILED:
                self._book(payment, returned=status is BankStatus.RETURNED, at=now)
            self._feed.append((key, status))

    def _book(self, payment: _BankPayment, *, returned: bool, at: datetime) -> None:
        instruction = payment.instruction
        line = StatementLine(
            line_id=len(self._lines) + 1,
            bank_payment_id=payment.id,
            reference=instruction.reference,
            is_return=returned,
            # Money left our account: a payout, or a collection taken back.
            outgoing=instruction.outgoing != returned,
            amount=instruction.amount,
            currency=instruction.currency,
        )
        self._lines.append(_Line(at.date(), line))


@dataclass
class MemoryPayments:
    """The fakes of one payments service, made together (one clock for all)."""

    clock: ManualClock = field(default_factory=ManualClock)
    database: MemoryDatabase = field(default_factory=MemoryDatabase)
    ledger: MemoryLedger = field(default_factory=MemoryLedger)
    identity: MemoryIdentity = field(default_factory=MemoryIdentity)
    bank: MemoryBank = field(init=False)

    def __post_init__(self) -> None:
        self.bank = MemoryBank(self.clock)

    def uow(self) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self.database)

    def deps(self, policy: Policy | None = None) -> Deps:
        """The use cases' dependencies, each one of these fakes."""
        return Deps(
            uow=self.uow,
            clock=self.clock,
            ledger=self.ledger,
            identity=self.identity,
            bank=self.bank,
            policy=policy or Policy(),
        )
