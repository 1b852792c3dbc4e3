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
from collections.abc import Callable, Iterable, Mapping
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


@dataclass(slots=True)
class _Line:
    """A statement line as the checks see it: the payment it names (if any) and the ledger."""

    line: StatementLine
    found: Payment | None
    day: date
    # Lines our side expects and no line has claimed yet (see ``claim``).
    expected: dict[tuple[str, bool], Payment]
    clearing_bookings: Mapping[str, int]

    @property
    def payment(self) -> Payment:
        assert self.found is not None  # the first check stops every line without one
        return self.found

    def claim(self) -> bool:
        """Take the line our side expects for this one; a second line for it finds none."""
        return self.expected.pop((self.payment.id, self.line.is_return), None) is not None

    @property
    def transfer_id(self) -> str:
        return transfer_id(self.payment.id, booking_step(self.payment, self.line))

    @property
    def wanted(self) -> int:
        """The signed amount the line's booking must have posted to clearing."""
        return clearing_amount(self.payment, booking_step(self.payment, self.line))

    @property
    def booked(self) -> int | None:
        return self.clearing_bookings.get(self.transfer_id)


@dataclass(frozen=True, slots=True)
class _Check:
    """One test a line must pass, and the break it is when it does not."""

    kind: BreakKind
    passes: Callable[[_Line], bool]
    expected: Callable[[_Line], int]
    actual: Callable[[_Line], int]
    detail: Callable[[_Line], str]

    def break_of(self, at: _Line) -> Break:
        line = at.line
        payment_id = at.found.id if at.found is not None else ""
        return Break(
            self.kind,
            payment_id,
            line.bank_payment_id,
            self.expected(at),
            self.actual(at),
            line.currency,
            self.detail(at),
        )


def _names_ours(at: _Line) -> bool:
    ours = at.found
    return ours is not None and (
        not ours.bank_payment_id or ours.bank_payment_id == at.line.bank_payment_id
    )


# Each line is checked in this order; the first check it fails is its break.
_CHECKS = (
    _Check(
        BreakKind.UNKNOWN_AT_BANK,
        passes=_names_ours,
        expected=lambda at: 0,
        actual=lambda at: at.line.amount,
        detail=lambda at: (
            f"statement line {at.line.line_id} (reference {at.line.reference!r}) "
            "matches no payment of ours"
        ),
    ),
    _Check(
        BreakKind.STATUS_MISMATCH,
        passes=_Line.claim,
        expected=lambda at: at.payment.amount,
        actual=lambda at: at.line.amount,
        detail=lambda at: (
            f"the bank {'returned' if at.line.is_return else 'settled'} it on {at.day}; "
            f"the payment is {at.payment.state.name}"
        ),
    ),
    _Check(
        BreakKind.AMOUNT_MISMATCH,
        passes=lambda at: (
            (at.line.amount, at.line.currency) == (at.payment.amount, at.payment.currency)
        ),
        expected=lambda at: at.payment.amount,
        actual=lambda at: at.line.amount,
        detail=lambda at: (
            f"the bank booked {at.line.amount} {at.line.currency}; "
            f"the payment is {at.payment.amount} {at.payment.currency}"
        ),
    ),
    _Check(
        BreakKind.LEDGER_MISMATCH,
        passes=lambda at: at.booked == at.wanted,
        expected=lambda at: at.wanted,
        actual=lambda at: at.booked or 0,
        detail=lambda at: (
            "the clearing account has "
            f"{at.booked if at.booked is not None else 'no booking'} "
            f"for {at.transfer_id}; the line needs {at.wanted}"
        ),
    ),
)


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
        at = _Line(line, payments.get(line.reference), day, expected, clearing_bookings)
        failed = next((check for check in _CHECKS if not check.passes(at)), None)
        if failed is None:
            matched += 1
        else:
            breaks.append(failed.break_of(at))
    # What no line claimed: the bank settled or returned nothing for it that day.
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
