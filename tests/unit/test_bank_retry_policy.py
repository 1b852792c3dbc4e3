"""chassis.retry: what is retried, how long it waits, when it gives up, what it logs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from chassis.retry import (
    Attempt,
    RetryEvent,
    RetryPolicy,
    TransientError,
    call_with_retry,
    is_transient,
    parse_retry_after,
    raise_for_transient_status,
)
from structlog.testing import capture_logs

REQUEST = httpx.Request("POST", "http://bank.test/v1/payments")


def status_error(status: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    response = httpx.Response(status, headers=headers, request=REQUEST)
    return httpx.HTTPStatusError(f"HTTP {status}", request=REQUEST, response=response)


class Script:
    """An attempt function that fails with the given errors, then returns "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.attempts: list[Attempt] = []

    def __call__(self, attempt: Attempt) -> str:
        self.attempts.append(attempt)
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused", request=REQUEST),
        httpx.ReadTimeout("slow", request=REQUEST),
        httpx.RemoteProtocolError("dropped", request=REQUEST),
        status_error(500),
        status_error(502),
        status_error(503),
        status_error(429),
        TransientError("adapter says so"),
    ],
)
def test_transient_failures_are_retried_until_success(error: BaseException) -> None:
    script, sleeps = Script(error, error), Sleeps()
    result = call_with_retry(script, RetryPolicy(max_attempts=5), operation="t", sleep=sleeps)
    assert result == "ok"
    assert [a.number for a in script.attempts] == [1, 2, 3]
    assert len(sleeps.waits) == 2


@pytest.mark.parametrize(
    "error", [status_error(400), status_error(404), status_error(422), ValueError("bug")]
)
def test_answers_and_bugs_are_not_retried(error: BaseException) -> None:
    script, sleeps = Script(error), Sleeps()
    with pytest.raises(type(error)):
        call_with_retry(script, RetryPolicy(), operation="t", sleep=sleeps)
    assert len(script.attempts) == 1
    assert sleeps.waits == []


def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    errors = [status_error(503) for _ in range(4)]
    script, sleeps = Script(*errors), Sleeps()
    with pytest.raises(httpx.HTTPStatusError) as raised:
        call_with_retry(script, RetryPolicy(max_attempts=4), operation="t", sleep=sleeps)
    assert raised.value is errors[-1]
    assert len(script.attempts) == 4
    assert len(sleeps.waits) == 3


def test_waits_are_full_jitter_under_a_doubling_cap() -> None:
    policy = RetryPolicy(max_attempts=7, initial_backoff=0.1, max_backoff=1.0, budget=1000)
    all_waits: list[list[float]] = []
    for _ in range(40):
        sleeps = Sleeps()
        call_with_retry(Script(*[TransientError("x")] * 6), policy, operation="t", sleep=sleeps)
        all_waits.append(sleeps.waits)
    for retry in range(6):
        cap = min(1.0, 0.1 * 2**retry)
        waits = [w[retry] for w in all_waits]
        assert all(0 <= w <= cap for w in waits)
        # Jitter: the waits of one retry differ between runs.
        assert len(set(waits)) > 1


def test_retry_after_is_honoured() -> None:
    sleeps = Sleeps()
    script = Script(status_error(429, {"Retry-After": "2"}))
    call_with_retry(script, RetryPolicy(max_backoff=0.5, budget=30), operation="t", sleep=sleeps)
    assert sleeps.waits[0] >= 2


def test_retry_after_beyond_the_budget_gives_up_at_once() -> None:
    script, sleeps = Script(status_error(429, {"Retry-After": "60"})), Sleeps()
    with pytest.raises(httpx.HTTPStatusError):
        call_with_retry(script, RetryPolicy(budget=5), operation="t", sleep=sleeps)
    assert len(script.attempts) == 1
    assert sleeps.waits == []


def test_attempts_learn_the_budget_left_and_cut_their_timeout() -> None:
    script = Script(TransientError("x"))
    call_with_retry(script, RetryPolicy(budget=3), operation="t", sleep=lambda _s: None)
    first = script.attempts[0]
    assert 0 < first.remaining <= 3
    assert first.timeout(10) == pytest.approx(first.remaining)
    assert first.timeout(0.5) == 0.5


def test_every_retry_is_logged_and_reported() -> None:
    events: list[RetryEvent] = []
    script = Script(status_error(503), httpx.ConnectError("refused", request=REQUEST))
    with capture_logs() as logs:
        call_with_retry(
            script,
            RetryPolicy(),
            operation="bank.submit",
            log_fields={"idempotency_key": "pay_1"},
            on_retry=events.append,
            sleep=lambda _s: None,
        )
    retries = [entry for entry in logs if entry["event"] == "retrying call"]
    assert [r["attempt"] for r in retries] == [1, 2]
    assert {r["idempotency_key"] for r in retries} == {"pay_1"}
    assert [e.error for e in events] == ["HTTP 503", "ConnectError"]
    assert all(e.operation == "bank.submit" for e in events)


def test_exhaustion_is_logged() -> None:
    with capture_logs() as logs, pytest.raises(TransientError):
        call_with_retry(
            Script(*[TransientError("x")] * 2),
            RetryPolicy(max_attempts=2),
            operation="t",
            sleep=lambda _s: None,
        )
    assert any(entry["event"] == "retries exhausted" for entry in logs)


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_raise_for_transient_status_lets_answers_through() -> None:
    ok = httpx.Response(201, request=REQUEST)
    refused = httpx.Response(422, request=REQUEST)
    assert raise_for_transient_status(ok) is ok
    assert raise_for_transient_status(refused) is refused
    with pytest.raises(httpx.HTTPStatusError):
        raise_for_transient_status(httpx.Response(503, request=REQUEST))
    assert is_transient(status_error(504))
    assert not is_transient(status_error(409))
