"""What payments and a bank say to each other: instructions, and the bank's answers. Pure.

The bank gateway (a port) speaks in these; the domain decides what each answer
does to a payment (``payments.domain.progress``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from payments.domain.model import BankAccount, BankStatus, Payment


@dataclass(frozen=True, slots=True)
class BankInstruction:
    idempotency_key: str
    outgoing: bool  # a credit transfer (we pay); else a direct debit (we collect)
    amount: int
    currency: str
    counterparty: BankAccount
    reference: str


def instruction_for(payment: Payment) -> BankInstruction:
    """The payment as the bank is asked to make it; the same on every attempt (its id is the
    idempotency key, so the bank acts on it at most once)."""
    return BankInstruction(
        idempotency_key=payment.id,
        outgoing=payment.outgoing,
        amount=payment.amount,
        currency=payment.currency,
        counterparty=payment.counterparty,
        reference=payment.id,
    )


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


@dataclass(frozen=True, slots=True)
class BankEvent:
    sequence: int
    status: BankStatus
    payment: BankPaymentView
