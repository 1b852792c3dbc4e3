"""The payout fee: a fixed part per currency plus basis points, in integer minor units."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

BASIS_POINTS = 10_000


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    basis_points: int = 0
    fixed: Mapping[str, int] = field(default_factory=dict)

    def fee_for(self, amount: int, currency: str) -> int:
        # Half up, in integers: no float ever touches money.
        proportional = (amount * self.basis_points * 2 + BASIS_POINTS) // (2 * BASIS_POINTS)
        return self.fixed.get(currency, 0) + proportional
