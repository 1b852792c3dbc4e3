"""How full the ledger's house accounts are, and the check new payments pass against it.

Reading the ledger on every creation would put a ledger call on the hot path;
instead the last known fill per currency is kept in memory and read again
every ``PAYMENTS_HOUSE_ACCOUNT_CHECK_SECONDS`` for the currencies this process
has seen. A currency seen for the first time is accepted until its first
reading: the reserve above the stop ratio is far larger than what can be
accepted between two readings (see ``payments.domain.limits``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from payments.domain.ledger_plan import house_account_ids
from payments.domain.limits import DEFAULT_STOP_RATIO, Capacity, fullest
from payments.service_layer.ports import LedgerPort

_log = structlog.get_logger("payments.capacity")


class CapacityWatch:
    def __init__(
        self,
        stop_ratio: float = DEFAULT_STOP_RATIO,
        on_reading: Callable[[str, float], None] = lambda _account, _usage: None,
    ) -> None:
        self.stop_ratio = stop_ratio
        self._on_reading = on_reading
        self._known: dict[str, Capacity] = {}
        self._watched: set[str] = set()
        self._lock = threading.Lock()

    def check(self, currency: str) -> None:
        """Refuse (CURRENCY_CAPACITY_EXHAUSTED) when the currency's house accounts are too full."""
        known = self._known.get(currency)
        if known is None:
            if currency not in self._watched:
                with self._lock:
                    self._watched.add(currency)
            return
        known.check(self.stop_ratio)

    def refresh(self, ledger: LedgerPort) -> list[Capacity]:
        """Read the house accounts of every currency seen; returns the fullest of each."""
        with self._lock:
            currencies = sorted(self._watched)
        readings = []
        for currency in currencies:
            totals = ledger.running_totals(house_account_ids(currency))
            for account_id, sums in totals.items():
                self._on_reading(account_id, sums.usage())
            capacity = fullest(currency, totals)
            if capacity.usage >= self.stop_ratio:
                _log.error(
                    "house account near its limit: new payments in its currency are refused",
                    currency=currency,
                    account_id=capacity.account_id,
                    usage=round(capacity.usage, 6),
                    stop_ratio=self.stop_ratio,
                )
            self._known[currency] = capacity
            readings.append(capacity)
        return readings

    def watch(self, currency: str) -> None:
        with self._lock:
            self._watched.add(currency)
