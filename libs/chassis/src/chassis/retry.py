"""Retry policies for calls to the outside world (banks, partners), on Tenacity.

One place decides what is worth another attempt and how long to wait:

- only transient failures are retried: connect errors, timeouts, dropped
  connections, 5xx, 408, 425 and 429 (and ``TransientError`` raised by an
  adapter that knows better); anything else is the answer and goes back at once;
- waits grow exponentially with full jitter (a random wait between 0 and the
  exponential cap), so clients that failed together do not retry together;
- a ``Retry-After`` the server sent is honoured: never retry sooner;
- a total time budget bounds attempts and waits together: no retry starts when
  its wait would end past the budget, and each attempt is told how much of the
  budget is left so its own timeout can shrink to fit;
- every retry is logged (and reported to ``on_retry`` for counters).

The caller keeps what makes a retry safe: the same idempotency key on every
attempt of one logical call. Whether a request that got no answer was acted on
is the caller's question too (see the payments bank gateway: an unknown
outcome is resolved by asking for the status, never by sending blindly).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import httpx
import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

_log = structlog.get_logger("chassis.retry")
T = TypeVar("T")

# Statuses that say "not now" rather than "no".
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# Connect errors, timeouts, dropped connections; not configuration errors (bad URL, proxy).
_TRANSIENT_TRANSPORT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class TransientError(Exception):
    """Raised by an attempt to ask for another one, optionally not before ``retry_after``."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    # The first retry waits up to this long; each later one up to twice the last cap.
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    # Seconds for all attempts and waits of one logical call.
    budget: float = 15.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.initial_backoff < 0 or self.max_backoff < 0:
            raise ValueError("attempts >= 1 and non-negative backoffs are required")
        if self.budget <= 0:
            raise ValueError("the time budget must be positive")


@dataclass(frozen=True, slots=True)
class Attempt:
    """What an attempt knows: its number (from 1) and the seconds of budget left."""

    number: int
    remaining: float

    def timeout(self, per_attempt: float) -> float:
        """The attempt's own timeout: ``per_attempt``, cut to the budget left."""
        return max(0.001, min(per_attempt, self.remaining))


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """One retry about to happen, for counters."""

    operation: str
    attempt: int
    wait: float
    error: str
    retry_after: float | None


def is_transient(error: BaseException) -> bool:
    """True for failures that may pass on their own."""
    if isinstance(error, TransientError):
        return True
    if isinstance(error, httpx.HTTPStatusError):
        return error.response.status_code in TRANSIENT_STATUS
    return isinstance(error, _TRANSIENT_TRANSPORT)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def retry_after_of(error: BaseException | None) -> float | None:
    if isinstance(error, TransientError):
        return error.retry_after
    if isinstance(error, httpx.HTTPStatusError):
        return parse_retry_after(error.response.headers.get("retry-after"))
    return None


def raise_for_transient_status(response: httpx.Response) -> httpx.Response:
    """Raise for statuses worth a retry; any other answer is returned for the caller to read."""
    if response.status_code in TRANSIENT_STATUS:
        raise httpx.HTTPStatusError(
            f"HTTP {response.status_code} from {response.request.url.path}",
            request=response.request,
            response=response,
        )
    return response


def describe(error: BaseException | None) -> str:
    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTP {error.response.status_code}"
    return type(error).__name__ if error is not None else "none"


class _Wait:
    """Full-jitter exponential backoff, but never sooner than the server's Retry-After."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._backoff = wait_random_exponential(
            multiplier=policy.initial_backoff, max=policy.max_backoff
        )

    def __call__(self, state: RetryCallState) -> float:
        jittered = float(self._backoff(state))
        hint = retry_after_of(state.outcome.exception() if state.outcome else None)
        return jittered if hint is None else max(hint, jittered)


def call_with_retry(
    fn: Callable[[Attempt], T],
    policy: RetryPolicy,
    *,
    operation: str,
    log_fields: Mapping[str, object] | None = None,
    retry_if: Callable[[BaseException], bool] = is_transient,
    on_retry: Callable[[RetryEvent], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` until it succeeds, fails for good, or the policy runs out; re-raise the last."""
    fields = dict(log_fields or {})
    started = time.monotonic()
    numbers = itertools.count(1)

    def attempt() -> T:
        remaining = policy.budget - (time.monotonic() - started)
        return fn(Attempt(next(numbers), max(0.0, remaining)))

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        event = RetryEvent(
            operation=operation,
            attempt=state.attempt_number,
            wait=float(state.upcoming_sleep),
            error=describe(error),
            retry_after=retry_after_of(error),
        )
        _log.warning(
            "retrying call",
            operation=operation,
            attempt=event.attempt,
            wait_seconds=round(event.wait, 3),
            error=event.error,
            retry_after=event.retry_after,
            **fields,
        )
        if on_retry is not None:
            on_retry(event)

    retrying = Retrying(
        retry=retry_if_exception(retry_if),
        stop=stop_after_attempt(policy.max_attempts) | stop_before_delay(policy.budget),
        wait=_Wait(policy),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
    try:
        return retrying(attempt)
    except BaseException as error:
        if retry_if(error):
            _log.warning(
                "retries exhausted",
                operation=operation,
                error=describe(error),
                elapsed_seconds=round(time.monotonic() - started, 3),
                **fields,
            )
        raise
