"""Money: integer minor units with an ISO 4217 currency code. Never floats.

Exponents come from one table, the ``iso4217`` package (ISO's own list, kept
current by its maintainers), wrapped here so every context asks the same place.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from iso4217 import Currency as _Iso4217

# The range of a PostgreSQL bigint and a protobuf int64.
MAX_AMOUNT = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Currency:
    code: str
    exponent: int


class UnknownCurrency(ValueError):
    """Not an ISO 4217 code, or a code without minor units (gold, SDR...)."""


@functools.cache
def currency(code: str) -> Currency:
    """The ISO 4217 currency for an alphabetic code, or ``UnknownCurrency``."""
    if not isinstance(code, str) or len(code) != 3 or not code.isascii() or not code.isupper():
        raise UnknownCurrency(f"{code!r} is not an ISO 4217 alphabetic code")
    try:
        entry = _Iso4217(code)
    except ValueError:
        raise UnknownCurrency(f"{code!r} is not an ISO 4217 currency") from None
    if entry.exponent is None:
        raise UnknownCurrency(f"{code} has no minor unit and cannot hold money amounts")
    return Currency(code=code, exponent=int(entry.exponent))


def is_currency(code: str) -> bool:
    try:
        currency(code)
    except UnknownCurrency:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Money:
    """A non-negative amount of minor units of one currency."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.amount) is not int:
            raise TypeError("money amounts are integers of minor units")
        if not 0 <= self.amount <= MAX_AMOUNT:
            raise ValueError(f"amount {self.amount} is outside 0..{MAX_AMOUNT}")
        currency(self.currency)

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} with {other.currency}")

    def __str__(self) -> str:
        exp = currency(self.currency).exponent
        if exp == 0:
            return f"{self.amount} {self.currency}"
        whole, frac = divmod(self.amount, 10**exp)
        return f"{whole}.{frac:0{exp}d} {self.currency}"
