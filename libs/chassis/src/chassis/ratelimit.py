"""Token buckets: a rate with a burst, per key and overall (pure: the caller passes the time).

``TokenBucket.take(now)`` spends one token and returns 0, or spends nothing and
returns how many seconds until a token is there (what a ``RetryInfo`` says).
``KeyedBuckets`` keeps one bucket per key (a client id) in a bounded map: a
flood of distinct keys evicts the least recently used buckets instead of
growing without limit (an evicted key starts again with a full bucket, which
the overall bucket still bounds). ``RateLimit`` combines both.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rate:
    """``per_second`` tokens a second, at most ``burst`` saved up."""

    per_second: float
    burst: float

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.burst < 1:
            raise ValueError("a rate needs per_second > 0 and burst >= 1")


class TokenBucket:
    """Not thread-safe on its own: ``KeyedBuckets`` and ``RateLimit`` lock around it."""

    __slots__ = ("_rate", "_tokens", "_updated")

    def __init__(self, rate: Rate, now: float) -> None:
        self._rate = rate
        self._tokens = rate.burst
        self._updated = now

    def _fill(self, now: float) -> None:
        if now > self._updated:
            gained = (now - self._updated) * self._rate.per_second
            self._tokens = min(self._rate.burst, self._tokens + gained)
            self._updated = now

    def wait_time(self, now: float) -> float:
        """Seconds until one token is there (0: now)."""
        self._fill(now)
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self._rate.per_second

    def take(self, now: float) -> float:
        """Spend a token and return 0, or return the wait and spend nothing."""
        wait = self.wait_time(now)
        if wait == 0.0:
            self._tokens -= 1
        return wait


class KeyedBuckets:
    def __init__(self, rate: Rate, max_keys: int = 10_000) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._rate = rate
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def bucket(self, key: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self._rate, now)
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket


class RateLimit:
    """A per-key rate and an overall one; a call needs a token from both."""

    def __init__(
        self,
        per_key: Rate,
        overall: Rate,
        *,
        max_keys: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._now = monotonic
        self._keys = KeyedBuckets(per_key, max_keys)
        # Starts full: its first refill (from minus infinity) tops it up to the burst.
        self._overall = TokenBucket(overall, float("-inf"))
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """0 if the call may go ahead (a token spent from both), else seconds to wait."""
        if now is None:
            now = self._now()
        with self._lock:
            own = self._keys.bucket(key, now)
            # Both checked before either is spent: a refused call costs no one a token.
            wait = max(own.wait_time(now), self._overall.wait_time(now))
            if wait == 0.0:
                own.take(now)
                self._overall.take(now)
            return wait

    @property
    def tracked_keys(self) -> int:
        return len(self._keys)
