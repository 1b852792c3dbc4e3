"""Fault injection: each /v1 request rolls the dice once and may be answered badly.

The faults are the ones a real bank's API shows: 5xx errors, 429 with
Retry-After, slow answers, requests that hang until the client gives up, and
lost responses (the bank acts, the reply never arrives).
"""

from __future__ import annotations

import enum
import random
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

from sandbox_bank.config import FaultSettings


class Fault(enum.Enum):
    NONE = "none"
    RATE_LIMITED = "rate_limited"
    ERROR = "error"
    TIMEOUT = "timeout"
    SLOW = "slow"
    LOST_RESPONSE = "lost_response"


class UnknownFaultSetting(ValueError):
    pass


class FaultInjector:
    def __init__(self, settings: FaultSettings, seed: int | None = None) -> None:
        self._settings = settings
        self._random = random.Random(seed)  # noqa: S311 - fault dice, not cryptography
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def update(self, patch: Mapping[str, Any]) -> FaultSettings:
        unknown = set(patch) - set(FaultSettings.model_fields)
        if unknown:
            raise UnknownFaultSetting(f"unknown fault settings: {sorted(unknown)}")
        with self._lock:
            merged = {**self._settings.model_dump(), **patch}
            # model_validate checks ranges without reading the environment again.
            self._settings = FaultSettings.model_validate(merged)
            return self._settings

    def roll(self, *, submission: bool) -> Fault:
        """The fault for one request; lost responses only happen to submissions."""
        s = self._settings
        with self._lock:
            dice = self._random.random()
        fault = Fault.NONE
        for candidate, rate in (
            (Fault.RATE_LIMITED, s.rate_limit_rate),
            (Fault.ERROR, s.error_rate),
            (Fault.TIMEOUT, s.timeout_rate),
            (Fault.LOST_RESPONSE, s.lost_response_rate if submission else 0.0),
            (Fault.SLOW, s.slow_rate),
        ):
            if dice < rate:
                fault = candidate
                break
            dice -= rate
        if fault is not Fault.NONE:
            with self._lock:
                self.injected[fault.value] += 1
        return fault

    def error_status(self) -> int:
        with self._lock:
            return self._random.choice((500, 502, 503))
