"""The bank gateway: payments' port to a bank's HTTP API (httpx), with retries and a breaker.

Every logical call (submit, status lookup, statement page) runs under the
chassis retry policy (``chassis.retry``): only transient failures are retried,
with full-jitter backoff, honouring Retry-After, inside a total time budget,
each retry logged. A submission carries the same ``Idempotency-Key`` (the
payment id) on every attempt, so the bank acts on it at most once however many
attempts reach it.

Each single request passes through one circuit breaker per bank (pybreaker):
after ``fail_max`` consecutive failures (connect errors, timeouts, 5xx; not
429, which is the bank being up and busy) it opens and calls fail at once,
without touching the bank; after ``reset_timeout`` one trial request is let
through, and its success closes it again. An open breaker is never retried
within a call: the worker comes back to the payment later.

Every request is signed with the key shared with the bank, and every answer
must carry the bank's signature over it and over the request it answers
(``chassis.http_signatures``). An answer that fails that check is not the
bank's: it counts as a bank fault, like a 5xx (retried with the same key, a
failure for the breaker; a submission's outcome is then unknown and resolved
by asking the bank), never as an answer and never as a crash.

Attempts, retries, outcomes and breaker states are counted in the chassis'
dependency metric families (``dependency="bank"``) and logged.
"""

from __future__ import annotations

import ssl
import time
from datetime import date, datetime
from typing import Any

import httpx
import pybreaker
import structlog
from chassis.http_signatures import SignatureError
from chassis.metrics import (
    DEPENDENCY_ATTEMPTS,
    DEPENDENCY_OUTCOMES,
    DEPENDENCY_RETRIES,
    DEPENDENCY_SECONDS,
    record_breaker_state,
)
from chassis.retry import (
    Attempt,
    RetryEvent,
    RetryPolicy,
    TransientError,
    call_with_retry,
    is_transient,
    raise_for_transient_status,
)

from payments.domain.bank import (
    BankEvent,
    BankInstruction,
    BankPaymentView,
    LookupOutcome,
    LookupResult,
    SubmitOutcome,
    SubmitResult,
)
from payments.domain.model import BankStatus
from payments.domain.reconciliation import StatementLine
from payments.service_layer.ports import BankUnavailable

_log = structlog.get_logger("payments.bank")
DEPENDENCY = "bank"


class BreakerOpen(Exception):
    """The bank's breaker is open: the request was not sent."""


class BankSignatureInvalid(TransientError):
    """An answer without the bank's valid signature: as if no answer had come."""


def _is_rate_limited(error: BaseException) -> bool:
    return isinstance(error, httpx.HTTPStatusError) and error.response.status_code == 429


class _BreakerLog(pybreaker.CircuitBreakerListener):
    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        record_breaker_state(cb.name or DEPENDENCY, new_state.name)
        _log.warning(
            "bank circuit breaker changed state",
            breaker=cb.name,
            old=old_state.name if old_state else None,
            new=new_state.name,
        )


def new_breaker(name: str, fail_max: int, reset_timeout: float) -> pybreaker.CircuitBreaker:
    breaker = pybreaker.CircuitBreaker(
        fail_max=fail_max,
        reset_timeout=reset_timeout,
        exclude=[_is_rate_limited],
        listeners=[_BreakerLog()],
        name=name,
        # Raise the failure that tripped it, so the retry policy sees what happened.
        throw_new_error_on_trip=False,
    )
    record_breaker_state(name, breaker.current_state)
    return breaker


def _attempt_result(error: BaseException | None, response: httpx.Response | None) -> str:
    if isinstance(error, BreakerOpen):
        return "breaker_open"
    if isinstance(error, BankSignatureInvalid):
        return "bad_signature"
    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        return "http_429" if status == 429 else f"http_{status // 100}xx"
    if isinstance(error, httpx.TimeoutException):
        return "timeout"
    if isinstance(error, httpx.ConnectError):
        return "connect_error"
    if error is not None:
        return "transport_error"
    assert response is not None
    return "ok" if response.status_code < 400 else f"http_{response.status_code // 100}xx"


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def view_of(body: dict[str, Any]) -> BankPaymentView:
    return BankPaymentView(
        bank_payment_id=str(body["id"]),
        reference=str(body.get("reference", "")),
        status=BankStatus(body["status"]),
        amount=int(body["amount"]),
        currency=str(body["currency"]),
        failure_code=str(body.get("failure_code") or ""),
        settled_at=_time(body.get("settled_at")),
        returned_at=_time(body.get("returned_at")),
    )


class HttpBankGateway:
    def __init__(
        self,
        base_url: str,
        *,
        policy: RetryPolicy,
        breaker: pybreaker.CircuitBreaker,
        auth: httpx.Auth,
        timeout: float = 2.0,
        max_connections: int = 64,
        verify: ssl.SSLContext | bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._timeout = timeout
        self._policy = policy
        self.breaker = breaker
        self._client = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 1.0)),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            auth=auth,
            verify=verify,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    # --- one request, through the breaker ----------------------------------------------------

    def _request(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        timeout: float,
        tries: list[str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        started = time.perf_counter()
        response: httpx.Response | None = None
        error: BaseException | None = None
        try:
            # ``calling()`` checks and updates the breaker under its lock but runs the
            # request outside it; ``breaker.call`` would hold the lock for the whole
            # request and so let only one request to the bank run at a time.
            with self.breaker.calling():
                response = self._send(method, path, timeout, kwargs)
            return response
        except pybreaker.CircuitBreakerError:
            error = BreakerOpen("the bank's circuit breaker is open")
            raise error from None
        except BaseException as failure:
            error = failure
            raise
        finally:
            if not isinstance(error, BreakerOpen):
                DEPENDENCY_SECONDS.labels(DEPENDENCY, operation).observe(
                    time.perf_counter() - started
                )
            result = _attempt_result(error, response)
            DEPENDENCY_ATTEMPTS.labels(DEPENDENCY, operation, result).inc()
            if tries is not None:
                tries.append(result)

    def _send(
        self, method: str, path: str, timeout: float, kwargs: dict[str, Any]
    ) -> httpx.Response:
        try:
            response = self._client.request(method, path, timeout=timeout, **kwargs)
        except SignatureError as error:
            _log.error(
                "an answer from the bank failed its signature check; not believed",
                path=path,
                reason=error.reason,
            )
            raise BankSignatureInvalid(str(error)) from error
        return raise_for_transient_status(response)

    def _call(
        self,
        operation: str,
        method: str,
        path: str,
        key: str = "",
        tries: list[str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """The request under the retry policy; raises the last failure when it runs out."""

        def attempt(a: Attempt) -> httpx.Response:
            return self._request(
                operation, method, path, timeout=a.timeout(self._timeout), tries=tries, **kwargs
            )

        def counted(_event: RetryEvent) -> None:
            DEPENDENCY_RETRIES.labels(DEPENDENCY, operation).inc()

        return call_with_retry(
            attempt,
            self._policy,
            operation=f"bank.{operation}",
            log_fields={"idempotency_key": key} if key else None,
            on_retry=counted,
        )

    # --- the port -----------------------------------------------------------------------------

    def submit(self, instruction: BankInstruction) -> SubmitOutcome:
        body = {
            "type": "credit_transfer" if instruction.outgoing else "direct_debit",
            "amount": instruction.amount,
            "currency": instruction.currency,
            "counterparty": {
                "account_number": instruction.counterparty.account_number,
                "name": instruction.counterparty.holder_name,
            },
            "reference": instruction.reference,
        }
        headers = {"Idempotency-Key": instruction.idempotency_key}
        tries: list[str] = []
        try:
            response = self._call(
                "submit",
                "POST",
                "/v1/payments",
                key=instruction.idempotency_key,
                tries=tries,
                json=body,
                headers=headers,
            )
        except Exception as error:
            if not (isinstance(error, BreakerOpen) or is_transient(error)):
                raise
            code = "breaker_open" if isinstance(error, BreakerOpen) else type(error).__name__
            # Only when no attempt can have reached the bank is the payment surely not sent;
            # otherwise the worker resolves it by asking the bank, never by sending blindly.
            unsent = all(t in ("breaker_open", "connect_error") for t in tries)
            result = SubmitResult.NOT_SENT if unsent else SubmitResult.UNKNOWN
            return self._outcome(SubmitOutcome(result, code=code))
        if response.status_code in (200, 201):
            return self._outcome(
                SubmitOutcome(SubmitResult.ACCEPTED, payment=view_of(response.json()))
            )
        code = _error_code(response)
        _log.warning(
            "bank refused a payment",
            idempotency_key=instruction.idempotency_key,
            status=response.status_code,
            code=code,
        )
        return self._outcome(SubmitOutcome(SubmitResult.REFUSED, code=code))

    def _outcome(self, outcome: SubmitOutcome) -> SubmitOutcome:
        DEPENDENCY_OUTCOMES.labels(DEPENDENCY, "submit", outcome.result.value).inc()
        return outcome

    def lookup(self, idempotency_key: str) -> LookupOutcome:
        try:
            response = self._call(
                "lookup",
                "GET",
                "/v1/payments",
                key=idempotency_key,
                params={"idempotency_key": idempotency_key},
            )
        except BreakerOpen:
            outcome = LookupOutcome(LookupResult.UNKNOWN)
        except Exception as error:
            if not is_transient(error):
                raise
            outcome = LookupOutcome(LookupResult.UNKNOWN)
        else:
            found = response.json().get("payments", []) if response.status_code == 200 else None
            if found is None:
                outcome = LookupOutcome(LookupResult.UNKNOWN)
            elif found:
                outcome = LookupOutcome(LookupResult.FOUND, view_of(found[0]))
            else:
                outcome = LookupOutcome(LookupResult.NOT_FOUND)
        DEPENDENCY_OUTCOMES.labels(DEPENDENCY, "lookup", outcome.result.value).inc()
        return outcome

    def events(self, after: int, wait: float) -> tuple[list[BankEvent], int]:
        try:
            response = self._request(
                "events",
                "GET",
                "/v1/events",
                timeout=wait + self._timeout,
                params={"after": after, "wait": wait, "limit": 1000},
            )
        except (BreakerOpen, BankSignatureInvalid, httpx.HTTPError) as error:
            raise BankUnavailable(str(error)) from error
        if response.status_code != 200:
            raise BankUnavailable(f"HTTP {response.status_code} from the event feed")
        body = response.json()
        events = [
            BankEvent(int(e["sequence"]), BankStatus(e["status"]), view_of(e["payment"]))
            for e in body["events"]
        ]
        return events, int(body["next_after"])

    def statement(self, day: date) -> list[StatementLine]:
        lines: list[StatementLine] = []
        after = 0
        while True:
            try:
                response = self._call(
                    "statement",
                    "GET",
                    f"/v1/statements/{day.isoformat()}",
                    params={"after": after, "limit": 1000},
                )
            except Exception as error:
                if isinstance(error, BreakerOpen) or is_transient(error):
                    raise BankUnavailable(str(error)) from error
                raise
            if response.status_code != 200:
                raise BankUnavailable(f"HTTP {response.status_code} from the statement")
            body = response.json()
            for line in body["lines"]:
                lines.append(
                    StatementLine(
                        line_id=int(line["line_id"]),
                        bank_payment_id=str(line["payment_id"]),
                        reference=str(line["reference"]),
                        is_return=line["kind"] == "return",
                        outgoing=line["direction"] == "debit",
                        amount=int(line["amount"]),
                        currency=str(line["currency"]),
                    )
                )
            if body.get("next_after") is None:
                return lines
            after = int(body["next_after"])


def _error_code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"http_{response.status_code}"
    code = body.get("error") if isinstance(body, dict) else None
    return str(code) if code else f"http_{response.status_code}"
