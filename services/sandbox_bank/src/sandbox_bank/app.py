"""The sandbox bank's HTTP API (Starlette), shaped like a real bank's.

Client API (faults apply here):
- ``POST /v1/payments`` with ``Idempotency-Key``: submit a credit transfer (pay
  someone) or a direct debit (collect from someone). The same key and body
  replay the original answer (200, ``Idempotent-Replayed: true``); the same key
  with another body is refused (422 ``idempotency_key_reused``).
- ``GET /v1/payments/{id}``, ``GET /v1/payments?idempotency_key=K``: status.
- ``GET /v1/events?after=N&limit=L&wait=S``: the feed of status changes in
  order, long-polled for up to S seconds when there is nothing new.
- ``GET /v1/statements/{YYYY-MM-DD}?after=N&limit=L``: the day's booked lines.

Every client API request must be signed with the key shared with payments
(``chassis.http_signatures``: method, path and query, body digest, time, nonce,
key id); an unsigned, forged, stale or replayed one is refused (401) before it
is read, and every answer to a signed request, events and statements included,
is signed with the same key over the request it answers.

Admin API (no faults, not signed; for tests and operators): ``GET/PUT /admin/faults``,
``POST /admin/payments/{id}/return``, ``GET /admin/payments``, ``GET /admin/stats``.
``GET /health`` answers while the process runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from typing import Any, Literal

import structlog
from chassis.http_signatures import (
    SignatureError,
    SigningKey,
    sign_response,
    verify_request,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox_bank.config import BankSettings, FaultSettings
from sandbox_bank.faults import Fault, FaultInjector, UnknownFaultSetting
from sandbox_bank.store import (
    REJECT_AT_SUBMISSION,
    BankStore,
    IdempotencyKeyReused,
    Submission,
    request_hash,
)

_log = structlog.get_logger("sandbox_bank")

MAX_KEY = 255
MAX_REFERENCE = 140
MAX_ACCOUNT = 64
MAX_NAME = 140
MAX_PAGE = 1000
MAX_WAIT_SECONDS = 30.0

Handler = Callable[[Request], Awaitable[Response]]


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


class Bank:
    """The running bank: books, fault dice, and the settlement clock."""

    def __init__(
        self, settings: BankSettings, key: SigningKey, faults: FaultSettings | None = None
    ) -> None:
        self.settings = settings
        self.key = key
        self.refused: Counter[str] = Counter()
        self.store = BankStore(settings.database)
        self.faults = FaultInjector(faults or FaultSettings(), settings.seed)
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()

    # --- settlement loop ---------------------------------------------------------------

    async def run_settlement(self) -> None:
        while True:
            settled = self.store.settle_due(time.time(), self.settings.return_delay_seconds)
            if settled:
                await self._notify()
                continue
            due = self.store.next_due()
            timeout = 1.0 if due is None else max(0.0, min(1.0, due - time.time()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- signatures ------------------------------------------------------------------------

    def signed(self, handler: Handler) -> Handler:
        """Refuse what payments did not sign; sign what the bank answers."""

        async def wrapped(request: Request) -> Response:
            body = await request.body()  # Starlette keeps it for the handler
            query = request.scope.get("query_string", b"")
            target = request.scope.get("raw_path", b"").decode("ascii") + (
                "?" + query.decode("ascii") if query else ""
            )
            try:
                verified = verify_request(
                    {self.key.key_id: self.key.secret},
                    request.method,
                    target,
                    body,
                    request.headers,
                    nonces=self.store,
                )
            except SignatureError as error:
                self.refused[error.reason] += 1
                _log.warning("refused a request", reason=error.reason, path=request.url.path)
                return _error(401, f"signature_{error.reason}", str(error))
            response = await handler(request)
            response.headers.update(
                sign_response(
                    self.key,
                    response.status_code,
                    bytes(response.body),
                    request_method=request.method,
                    request_target=target,
                    request_nonce=verified.nonce,
                )
            )
            return response

        return wrapped

    # --- fault wrapper -------------------------------------------------------------------

    def faulty(self, handler: Handler, *, submission: bool = False) -> Handler:
        async def wrapped(request: Request) -> Response:
            faults = self.faults.settings
            if faults.latency_ms:
                await asyncio.sleep(faults.latency_ms / 1000)
            fault = self.faults.roll(submission=submission)
            if fault is Fault.RATE_LIMITED:
                return _error(
                    429,
                    "rate_limited",
                    "too many requests",
                    {"Retry-After": str(faults.retry_after_seconds)},
                )
            if fault is Fault.ERROR:
                status = self.faults.error_status()
                return _error(status, "internal_error", "the bank had a problem; try again")
            if fault is Fault.TIMEOUT:
                await asyncio.sleep(faults.hang_seconds)
                return _error(504, "timeout", "the request timed out inside the bank")
            if fault is Fault.SLOW:
                await asyncio.sleep(faults.slow_seconds)
            response = await handler(request)
            if fault is Fault.LOST_RESPONSE:
                # The bank has acted; the client never hears about it.
                await asyncio.sleep(faults.hang_seconds)
            return response

        return wrapped

    # --- client API --------------------------------------------------------------------------

    async def submit(self, request: Request) -> Response:
        key = request.headers.get("idempotency-key", "")
        if not key or len(key) > MAX_KEY:
            return _error(
                400, "idempotency_key_required", f"Idempotency-Key: 1 to {MAX_KEY} characters"
            )
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "invalid_json", "the body is not JSON")
        submission, problem = parse_submission(body)
        if submission is None:
            return _error(400, "invalid_request", problem)
        if submission.counterparty_account.endswith(REJECT_AT_SUBMISSION):
            return _error(422, "account_closed", "the counterparty account is closed")
        settle_at = time.time() + self.settings.settlement_delay_seconds
        try:
            payment, replayed = self.store.submit(key, request_hash(body), submission, settle_at)
        except IdempotencyKeyReused:
            return _error(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request",
            )
        if not replayed:
            self._wake.set()
            await self._notify()
        headers = {"Idempotent-Replayed": "true"} if replayed else None
        return JSONResponse(payment, status_code=200 if replayed else 201, headers=headers)

    async def get_payment(self, request: Request) -> Response:
        payment = self.store.get(request.path_params["payment_id"])
        if payment is None:
            return _error(404, "not_found", "no such payment")
        return JSONResponse(payment)

    async def find_payments(self, request: Request) -> Response:
        key = request.query_params.get("idempotency_key", "")
        if not key:
            return _error(400, "invalid_request", "idempotency_key is required")
        payment = self.store.find_by_key(key)
        return JSONResponse({"payments": [payment] if payment else []})

    async def events(self, request: Request) -> Response:
        try:
            after = int(request.query_params.get("after", "0"))
            limit = min(MAX_PAGE, max(1, int(request.query_params.get("limit", "500"))))
            wait = min(MAX_WAIT_SECONDS, max(0.0, float(request.query_params.get("wait", "0"))))
        except ValueError:
            return _error(400, "invalid_request", "after, limit and wait are numbers")
        events = self.store.events_after(after, limit)
        if not events and wait > 0:
            deadline = time.monotonic() + wait
            async with self._changed:
                while not events:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), remaining)
                    events = self.store.events_after(after, limit)
        last = events[-1]["sequence"] if events else after
        return JSONResponse({"events": events, "next_after": last})

    async def statement(self, request: Request) -> Response:
        try:
            day = date.fromisoformat(request.path_params["day"])
            after = int(request.query_params.get("after", "0"))
            limit = min(MAX_PAGE, max(1, int(request.query_params.get("limit", "1000"))))
        except ValueError:
            return _error(400, "invalid_request", "the day is YYYY-MM-DD; after and limit numbers")
        lines = self.store.statement(day, after, limit)
        next_after = lines[-1]["line_id"] if len(lines) == limit else None
        return JSONResponse({"date": day.isoformat(), "lines": lines, "next_after": next_after})

    # --- admin API ---------------------------------------------------------------------------

    async def get_faults(self, _request: Request) -> Response:
        return JSONResponse(self.faults.settings.model_dump())

    async def put_faults(self, request: Request) -> Response:
        try:
            patch = await request.json()
            if not isinstance(patch, dict):
                raise TypeError("a JSON object is expected")
            settings = self.faults.update(patch)
        except (json.JSONDecodeError, TypeError, UnknownFaultSetting, ValidationError) as error:
            return _error(400, "invalid_request", str(error))
        _log.info("faults changed", **settings.model_dump())
        return JSONResponse(settings.model_dump())

    async def return_payment(self, request: Request) -> Response:
        payment = self.store.return_payment(request.path_params["payment_id"])
        if payment is None:
            return _error(409, "not_returnable", "only a settled payment can be returned")
        await self._notify()
        return JSONResponse(payment)

    async def admin_payments(self, request: Request) -> Response:
        after = request.query_params.get("after", "")
        limit = min(MAX_PAGE, max(1, int(request.query_params.get("limit", "1000"))))
        payments = self.store.list_payments(after, limit)
        next_after = payments[-1]["id"] if len(payments) == limit else None
        return JSONResponse({"payments": payments, "next_after": next_after})

    async def stats(self, _request: Request) -> Response:
        return JSONResponse(
            {
                "counters": self.store.counters(),
                "faults_injected": dict(self.faults.injected),
                "signatures_refused": dict(self.refused),
                "last_event_sequence": self.store.last_sequence(),
            }
        )

    async def health(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok"})


class _Counterparty(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_number: str = Field(min_length=1, max_length=MAX_ACCOUNT)
    name: str = Field("", max_length=MAX_NAME)


class _SubmissionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["credit_transfer", "direct_debit"]
    amount: int = Field(gt=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    counterparty: _Counterparty
    reference: str = Field("", max_length=MAX_REFERENCE)


def parse_submission(body: Any) -> tuple[Submission | None, str]:
    try:
        parsed = _SubmissionBody.model_validate(body)
    except ValidationError as error:
        problems = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()]
        return None, "; ".join(problems)
    return (
        Submission(
            type=parsed.type,
            amount=parsed.amount,
            currency=parsed.currency,
            counterparty_account=parsed.counterparty.account_number,
            counterparty_name=parsed.counterparty.name,
            reference=parsed.reference,
        ),
        "",
    )


def create_app(
    settings: BankSettings, key: SigningKey, faults: FaultSettings | None = None
) -> Starlette:
    bank = Bank(settings, key, faults)

    def client(handler: Handler, *, submission: bool = False) -> Handler:
        # The signature first: an unsigned request neither rolls the fault dice nor is read.
        return bank.signed(bank.faulty(handler, submission=submission))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        settler = asyncio.create_task(bank.run_settlement())
        try:
            yield
        finally:
            settler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await settler
            bank.store.close()

    routes = [
        Route("/v1/payments", client(bank.submit, submission=True), methods=["POST"]),
        Route("/v1/payments", client(bank.find_payments), methods=["GET"]),
        Route("/v1/payments/{payment_id}", client(bank.get_payment), methods=["GET"]),
        Route("/v1/events", client(bank.events), methods=["GET"]),
        Route("/v1/statements/{day}", client(bank.statement), methods=["GET"]),
        Route("/admin/faults", bank.get_faults, methods=["GET"]),
        Route("/admin/faults", bank.put_faults, methods=["PUT"]),
        Route("/admin/payments", bank.admin_payments, methods=["GET"]),
        Route("/admin/payments/{payment_id}/return", bank.return_payment, methods=["POST"]),
        Route("/admin/stats", bank.stats, methods=["GET"]),
        Route("/health", bank.health, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.bank = bank
    return app
