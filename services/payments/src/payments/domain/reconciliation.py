"""Reconciliation: the bank's statement of a day against our payments and the ledger. Pure.

From our side, each payment the bank settled on the day should have one
settlement line, and each it returned on the day one return line (the dates
are the bank's own, recorded when it reported them). Each line is matched by
its reference (our payment id) and bank payment id, then its amount, then the
ledger: the clearing account must carry the booking of that line (the
payment's POST or CREDIT for a settlement, its REVERSE for a return) for the
same signed amount.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from payments.domain.events import ReconciliationCompleted
from payments.domain.ledger_plan import clearing_amount
from payments.domain.model import LedgerStep, Payment, transfer_id


class BreakKind(enum.IntEnum):
    MISSING_AT_BANK = 1
    UNKNOWN_AT_BANK = 2
    AMOUNT_MISMATCH = 3
    STATUS_MISMATCH = 4
    LEDGER_MISMATCH = 5


@dataclass(frozen=True, slots=True)
class StatementLine:
    line_id: int
    bank_payment_id: str
    reference: str
    is_return: bool
    outgoing: bool  # money left our account at the bank
    amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class Break:
    kind: BreakKind
    payment_id: str
    bank_payment_id: str
    expected_amount: int
    actual_amount: int
    currency: str
    detail: str


@dataclass(frozen=True, slots=True)
class ReconciliationReport:
    run_id: str
    statement_date: date
    line_count: int
    matched: int
    breaks: tuple[Break, ...]
    created_at: datetime
    # Recorded and not yet handed to the unit of work (ReconciliationCompleted on a new run).
    events: list[ReconciliationCompleted] = field(
        default_factory=list, compare=False, hash=False, repr=False
    )

    def take_events(self) -> list[ReconciliationCompleted]:
        events = list(self.events)
        self.events.clear()
        return events


def expected_lines(payments: Iterable[Payment], day: date) -> dict[tuple[str, bool], Payment]:
    """(payment id, is return) of every line our side expects on the statement of ``day``."""
    expected: dict[tuple[str, bool], Payment] = {}
    for payment in payments:
        if payment.bank_settled_at is not None and payment.bank_settled_at.date() == day:
            expected[(payment.id, False)] = payment
        if payment.bank_returned_at is not None and payment.bank_returned_at.date() == day:
            expected[(payment.id, True)] = payment
    return expected


def booking_step(payment: Payment, line: StatementLine) -> LedgerStep:
    """The ledger step whose clearing booking a statement line of ``payment`` must match."""
    if line.is_return:
        return LedgerStep.REVERSE
    return LedgerStep.POST if payment.outgoing else LedgerStep.CREDIT


def bookings_to_check(lines: Iterable[StatementLine], payments: Mapping[str, Payment]) -> set[str]:
    """The transfer ids whose clearing bookings ``reconcile`` needs: one per line of ours."""
    return {
        transfer_id(payment.id, booking_step(payment, line))
        for line in lines
        if (payment := payments.get(line.reference)) is not None
    }


def reconcile(
    run_id: str,
    day: date,
    lines: Iterable[StatementLine],
    payments: Mapping[str, Payment],
    clearing_bookings: Mapping[str, int],
    now: datetime,
) -> ReconciliationReport:
    """``clearing_bookings``: transfer id -> signed posted amount on clearing (debit positive)."""
    expected = expected_lines(payments.values(), day)
    breaks: list[Break] = []
    matched = 0
    count = 0
    for line in lines:
        count += 1
        payment = payments.get(line.reference)
        if payment is None or (
            payment.bank_payment_id and payment.bank_payment_id != line.bank_payment_id
        ):
            breaks.append(
                Break(
                    BreakKind.UNKNOWN_AT_BANK,
                    payment.id if payment else "",
                    line.bank_payment_id,
                    0,
                    line.amount,
                    line.currency,
                    f"statement line {line.line_id} (reference {line.reference!r}) "
                    "matches no payment of ours",
                )
            )
            continue
        if expected.pop((payment.id, line.is_return), None) is None:
            what = "returned" if line.is_return else "settled"
            breaks.append(
                Break(
                    BreakKind.STATUS_MISMATCH,
                    payment.id,
                    line.bank_payment_id,
                    payment.amount,
                    line.amount,
                    line.currency,
                    f"the bank {what} it on {day}; the payment is {payment.state.name}",
                )
            )
            continue
        if line.amount != payment.amount or line.currency != payment.currency:
            breaks.append(
                Break(
                    BreakKind.AMOUNT_MISMATCH,
                    payment.id,
                    line.bank_payment_id,
                    payment.amount,
                    line.amount,
                    line.currency,
                    f"the bank booked {line.amount} {line.currency}; "
                    f"the payment is {payment.amount} {payment.currency}",
                )
            )
            continue
        step = booking_step(payment, line)
        want = clearing_amount(payment, step)
        booked = clearing_bookings.get(transfer_id(payment.id, step))
        if booked != want:
            breaks.append(
                Break(
                    BreakKind.LEDGER_MISMATCH,
                    payment.id,
                    line.bank_payment_id,
                    want,
                    booked or 0,
                    line.currency,
                    f"the clearing account has {booked if booked is not None else 'no booking'} "
                    f"for {transfer_id(payment.id, step)}; the line needs {want}",
                )
            )
            continue
        matched += 1
    for (payment_id, is_return), payment in sorted(expected.items()):
        breaks.append(
            Break(
                BreakKind.MISSING_AT_BANK,
                payment_id,
                payment.bank_payment_id,
                payment.amount,
                0,
                payment.currency,
                f"the payment was {'returned' if is_return else 'settled'} on {day} "
                "but the statement has no line for it",
            )
        )
    report = ReconciliationReport(run_id, day, count, matched, tuple(breaks), now)
    report.events.append(ReconciliationCompleted(report, now))
    return report
