"""What the service layer needs from the outside, as protocols the adapters implement.

Payments' own storage (``PaymentsRepository``, opened by the unit of work), the
ledger, identity and the bank. Each has a SQL or network adapter and an
in-memory one (``payments.adapters.memory``) that keeps the same promises.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, Protocol

from payments.domain.bank import BankEvent, BankInstruction, LookupOutcome, SubmitOutcome
from payments.domain.customers import CustomerErasure, CustomerKyc
from payments.domain.ledger_plan import AccountSpec, LedgerOperation, LedgerResult
from payments.domain.limits import RunningTotals
from payments.domain.model import Payment, Transition
from payments.domain.monitoring import Activity, Alert, AlertRule, AlertState
from payments.domain.reconciliation import ReconciliationReport, StatementLine
from payments.domain.risk_score import RiskScore
from payments.domain.states import PaymentState

# --- payments' own storage -----------------------------------------------------------------


class StaleWrite(Exception):
    """The payment changed since it was loaded (a version check failed)."""


class PaymentsRepository(Protocol):
    """Payments and their history, the KYC projection, the bank feed's cursor and
    reconciliation runs, inside one unit of work.

    ``lock=True`` holds the rows for the rest of the transaction. Every payment and
    run handed out or given is tracked: the unit of work collects their events
    (``take_events``). A payment is read without its history unless asked
    (``history=True``); a collection comes with its live refunds' sum.
    """

    def get(
        self, payment_id: str, *, lock: bool = False, history: bool = False
    ) -> Payment | None: ...

    def get_many(self, payment_ids: Iterable[str], *, lock: bool = False) -> dict[str, Payment]:
        """The payments that exist, by id (locked in id order)."""
        ...

    def history(self, payment_id: str) -> list[Transition]: ...

    def add(self, payment: Payment) -> None: ...

    def erase_customer(self, erasure: CustomerErasure) -> tuple[int, bool]:
        """Destroy the customer's personal data (counterparties' account numbers and names:
        its data key and what it sealed); the payments and their history stay, read back
        with an empty counterparty. Tracks ``erasure`` (its events are collected). Returns
        how many payments still held personal data, and whether a data key was destroyed."""
        ...

    def add_all(self, batch: Sequence[Payment]) -> None:
        """New payments; an id that exists already is a lost race (the retry replays it)."""
        ...

    def save(self, payment: Payment) -> None: ...

    def save_all(self, batch: Sequence[Payment]) -> None:
        """Write the payments' changes and new transitions; raises ``StaleWrite`` if one was
        written by someone else since it was loaded. Each one's version goes up by one."""
        ...

    def claim_due(self, now: datetime, limit: int) -> list[Payment]:
        """Payments whose next action is due and that nobody is working on, locked
        (skipping those another transaction holds), earliest first."""
        ...

    def velocities(
        self, keys: Iterable[tuple[str, str]], since: datetime
    ) -> dict[tuple[str, str], tuple[int, int]]:
        """Per (customer, currency): how many payouts and collections the customer made since
        ``since`` (in any currency; declined ones do not count), and their sum in that
        currency."""
        ...

    def refunded_amount(self, original_payment_id: str) -> int:
        """The sum of the live (not unsuccessful) refunds of a payment."""
        ...

    def page(
        self, after: str | None, limit: int, customer_id: str, state: PaymentState | None
    ) -> list[Payment]:
        """Up to ``limit`` payments after id ``after``, in id order, optionally filtered."""
        ...

    def open_for_screening(self, after: str, limit: int) -> list[str]:
        """Ids of payouts and collections not yet given to the bank (CREATED, IN_REVIEW,
        FUNDS_HELD) after id ``after``, in id order, up to ``limit``."""
        ...

    def open_of_customer(self, customer_id: str) -> list[str]:
        """Ids of the customer's payments not yet given to the bank (CREATED, IN_REVIEW,
        FUNDS_HELD), of every kind, in id order."""
        ...

    def booked_with_bank_on(self, day: date, start: datetime, end: datetime) -> list[Payment]:
        """Payments the bank settled or returned between ``start`` and ``end``."""
        ...

    def count_by_state(self) -> dict[PaymentState, int]: ...

    def count_stuck(self, min_retries: int) -> int:
        """Payments with work left whose next action failed ``min_retries`` times or more."""
        ...

    def customer(self, customer_id: str, *, lock: bool = False) -> CustomerKyc | None: ...

    def customers(
        self, customer_ids: Iterable[str], *, lock: bool = False
    ) -> dict[str, CustomerKyc]:
        """Several customers, locked in id order (so groups never deadlock each other)."""
        ...

    def upsert_customer(self, kyc: CustomerKyc, now: datetime) -> bool:
        """Store ``kyc`` unless a newer (or the same) KYC version is known; a customer_since
        of None keeps the one known. True when something was written."""
        ...

    def cursor(self, name: str) -> int: ...

    def set_cursor(self, name: str, position: int) -> None: ...

    def get_run(self, run_id: str) -> ReconciliationReport | None: ...

    def add_run(self, report: ReconciliationReport) -> None:
        """A new run; a run id that exists already is a lost race (the retry replays it)."""
        ...

    # --- monitoring ---------------------------------------------------------------------------

    def counterparty_tags(self, accounts: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """(customer, account number) -> the counterparty's tag: a digest keyed by the
        customer's data key, so a tag says nothing without it (and nothing once erased)."""
        ...

    def activities(
        self, tags: Mapping[str, Collection[str]], since: datetime, window_start: datetime
    ) -> dict[str, Activity]:
        """Per customer (the keys of ``tags``): its payouts and collections created since
        ``since`` (not declined), which of the counterparty tags asked about it paid before
        ``window_start``, and the rules of its open alerts."""
        ...

    def add_alerts(self, alerts: Sequence[Alert]) -> None: ...

    def get_alert(self, alert_id: str, *, lock: bool = False) -> Alert | None: ...

    def save_alert(self, alert: Alert) -> None:
        """Write a resolved alert; raises ``StaleWrite`` if it changed since it was read."""
        ...

    def alert_page(
        self,
        after: str | None,
        limit: int,
        customer_id: str,
        state: AlertState | None,
        rule: AlertRule | None,
    ) -> list[Alert]:
        """Up to ``limit`` alerts after id ``after``, in id order, optionally filtered."""
        ...

    def take_events(self) -> list[Any]: ...


# --- the fraud model -------------------------------------------------------------------------


class FraudModel(Protocol):
    """A trained fraud model loaded from its artifact."""

    @property
    def version(self) -> str: ...

    def score(self, features: Sequence[float]) -> RiskScore:
        """The probability of fraud of one payment (``risk_score.FEATURES`` in order), with
        the features that contributed most."""
        ...


# --- the ledger ------------------------------------------------------------------------------


class LedgerUnavailable(Exception):
    """The ledger could not be reached or did not answer in time: nothing is known."""


class LedgerRequestRefused(Exception):
    """The ledger refused a request of several operations as a whole (one is malformed).

    Nothing was booked; each operation alone gets its own answer.
    """


class LedgerPort(Protocol):
    """The ledger: every operation carries its own transfer id, and asking again under an id
    replays the first answer (a refusal too), never books twice. A call that gets no
    answer raises ``LedgerUnavailable``: whether it was booked is unknown until asked again.
    """

    def ensure_accounts(self, specs: Sequence[AccountSpec]) -> None:
        """Open the accounts that may not exist yet (idempotent)."""
        ...

    def apply(self, operations: Sequence[LedgerOperation]) -> list[LedgerResult]:
        """Unlinked operations in one request; one result per operation, in order.

        Raises ``LedgerRequestRefused`` when the ledger refuses the request as a whole.
        """
        ...

    def running_totals(self, account_ids: Collection[str]) -> dict[str, RunningTotals]:
        """The sums of each account that exists (those that do not are left out)."""
        ...

    def clearing_bookings(self, transfer_ids: Collection[str]) -> dict[str, int]:
        """Transfer id -> signed amount (debit positive) each posted to a bank clearing account.

        Only the transfers asked for; those that do not exist, or post nothing
        to clearing, are left out.
        """
        ...


# --- identity ---------------------------------------------------------------------------------


class IdentityUnavailable(Exception):
    pass


class IdentityPort(Protocol):
    def get_customer(self, customer_id: str) -> CustomerKyc | None:
        """The customer's KYC status; None if identity has no such customer."""
        ...


# --- the bank -----------------------------------------------------------------------------------


class BankUnavailable(Exception):
    pass


class BankGateway(Protocol):
    """A bank: a submission's idempotency key makes the bank act on it at most once, however
    often it is sent; asking with a key the bank has seen gives back that payment."""

    def submit(self, instruction: BankInstruction) -> SubmitOutcome: ...

    def lookup(self, idempotency_key: str) -> LookupOutcome: ...

    def events(self, after: int, wait: float) -> tuple[list[BankEvent], int]:
        """Status changes after ``after``, waiting up to ``wait`` s; raises BankUnavailable."""
        ...

    def statement(self, day: date) -> list[StatementLine]:
        """Every line of the day's statement; raises BankUnavailable."""
        ...
