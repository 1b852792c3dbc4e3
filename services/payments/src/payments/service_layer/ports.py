"""What the service layer needs from the outside, as protocols the adapters implement."""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from payments.domain.customers import CustomerKyc
from payments.domain.ledger_plan import AccountSpec, LedgerOperation
from payments.domain.limits import RunningTotals
from payments.domain.model import BankAccount, BankStatus
from payments.domain.reconciliation import StatementLine

# --- the ledger ------------------------------------------------------------------------------


class LedgerUnavailable(Exception):
    """The ledger could not be reached or did not answer in time: nothing is known."""


class LedgerRequestRefused(Exception):
    """The ledger refused a request of several operations as a whole (one is malformed).

    Nothing was booked; each operation alone gets its own answer.
    """


@dataclass(frozen=True, slots=True)
class LedgerResult:
    transfer_id: str
    ok: bool
    reason: str = ""
    message: str = ""


class LedgerPort(Protocol):
    def ensure_accounts(self, specs: Sequence[AccountSpec]) -> None:
        """Open the accounts that may not exist yet (idempotent)."""
        ...

    def apply_one(self, operation: LedgerOperation) -> LedgerResult:
        """One operation, grouped by the ledger with concurrent callers' operations."""
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


@dataclass(frozen=True, slots=True)
class BankInstruction:
    idempotency_key: str
    outgoing: bool  # a credit transfer (we pay); else a direct debit (we collect)
    amount: int
    currency: str
    counterparty: BankAccount
    reference: str


@dataclass(frozen=True, slots=True)
class BankPaymentView:
    bank_payment_id: str
    reference: str
    status: BankStatus
    amount: int
    currency: str
    failure_code: str = ""
    settled_at: datetime | None = None
    returned_at: datetime | None = None


class SubmitResult(enum.Enum):
    ACCEPTED = "accepted"  # the bank has it (new or replayed)
    REFUSED = "refused"  # the bank said no: nothing was paid
    UNKNOWN = "unknown"  # no answer: it may or may not have acted
    NOT_SENT = "not_sent"  # the breaker is open, or the bank could not be reached at all


@dataclass(frozen=True, slots=True)
class SubmitOutcome:
    result: SubmitResult
    payment: BankPaymentView | None = None
    code: str = ""


class LookupResult(enum.Enum):
    FOUND = "found"
    NOT_FOUND = "not_found"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class LookupOutcome:
    result: LookupResult
    payment: BankPaymentView | None = None


class BankUnavailable(Exception):
    pass


@dataclass(frozen=True, slots=True)
class BankEvent:
    sequence: int
    status: BankStatus
    payment: BankPaymentView


class BankGateway(Protocol):
    def submit(self, instruction: BankInstruction) -> SubmitOutcome: ...

    def lookup(self, idempotency_key: str) -> LookupOutcome: ...

    def events(self, after: int, wait: float) -> tuple[list[BankEvent], int]:
        """Status changes after ``after``, waiting up to ``wait`` s; raises BankUnavailable."""
        ...

    def statement(self, day: date) -> list[StatementLine]:
        """Every line of the day's statement; raises BankUnavailable."""
        ...
