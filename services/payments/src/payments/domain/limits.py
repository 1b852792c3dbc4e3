"""How large amounts may get: one payment, and the ledger's running totals. Pure.

The ledger keeps, per account, running totals of debits and credits (posted
and pending) that only grow, and refuses a booking that would take one past
the int64 range (BALANCE_OVERFLOW). The house accounts (bank clearing, fee
revenue, returns receivable: one each per currency) take every customer's
payments, so they are the ones that could run out. Two limits keep every
payment payments has accepted bookable:

- a per-payment maximum per currency (``AmountLimits``), refused at the edge,
  so no single payment can come near the int64 range;
- a stop ratio of the running totals (``Capacity``): once a house account's
  totals, pending counted as if posted, reach it, new payments in that
  currency are refused at the edge (RESOURCE_EXHAUSTED,
  CURRENCY_CAPACITY_EXHAUSTED); what is left above it is the reserve from which
  the payments already accepted are booked (posted, credited, reversed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from chassis.kernel.errors import DomainError, ErrorCategory
from chassis.kernel.money import MAX_AMOUNT, currency

# Default per-payment maximum, in major units of any currency (10**exponent minor units each).
DEFAULT_MAX_MAJOR_UNITS = 1_000_000_000
# At this share of the int64 range a house account stops taking new payments' money.
DEFAULT_STOP_RATIO = 0.9


@dataclass(frozen=True, slots=True)
class AmountLimits:
    """The largest amount one payment may move, per currency, in minor units."""

    max_major_units: int = DEFAULT_MAX_MAJOR_UNITS
    # Explicit maximums in minor units; they win over the default.
    per_currency: Mapping[str, int] = field(default_factory=dict)

    def max_amount(self, code: str) -> int:
        explicit = self.per_currency.get(code)
        if explicit is not None:
            return explicit
        scale: int = 10 ** currency(code).exponent
        return min(MAX_AMOUNT, self.max_major_units * scale)


@dataclass(frozen=True, slots=True)
class RunningTotals:
    """A ledger account's sums, as its balance reports them."""

    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    def usage(self) -> float:
        """The fuller side's total once everything pending is posted, as a share of int64."""
        debits = self.debits_posted + self.debits_pending
        credits = self.credits_posted + self.credits_pending
        return max(debits, credits) / MAX_AMOUNT


@dataclass(frozen=True, slots=True)
class Capacity:
    """What payments knows of one currency's house accounts: the fullest one and how full."""

    currency: str
    account_id: str
    usage: float

    def check(self, stop_ratio: float) -> None:
        if self.usage >= stop_ratio:
            raise capacity_exhausted(self, stop_ratio)


def fullest(code: str, totals: Mapping[str, RunningTotals]) -> Capacity:
    """The house account of ``code`` nearest its limit (usage 0 when none exists yet)."""
    if not totals:
        return Capacity(code, "", 0.0)
    account_id = max(totals, key=lambda a: totals[a].usage())
    return Capacity(code, account_id, totals[account_id].usage())


def capacity_exhausted(capacity: Capacity, stop_ratio: float) -> DomainError:
    return DomainError(
        "CURRENCY_CAPACITY_EXHAUSTED",
        f"payments in {capacity.currency} are not accepted now: the ledger account "
        f"{capacity.account_id} has used {capacity.usage:.1%} of the range its totals can hold "
        f"(new payments stop at {stop_ratio:.0%}, the rest books the payments already accepted); "
        "operators have been alerted",
        category=ErrorCategory.RESOURCE_EXHAUSTED,
        metadata={"currency": capacity.currency, "account_id": capacity.account_id},
    )
