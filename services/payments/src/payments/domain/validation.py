"""Stateless checks of what a client asked for, before anything is read or written."""

from __future__ import annotations

import re
from datetime import date

from chassis.kernel.errors import NotFound, Violations
from chassis.kernel.ids import id_rule, is_valid_id
from chassis.kernel.money import MAX_AMOUNT, is_currency

from payments.domain.model import PaymentRequest

PAYMENT_PREFIX = "pay"
CUSTOMER_PREFIX = "cus"
RUN_PREFIX = "rec"
# Short enough that every ledger transfer id derived from it ("tr_<id>_<step>") fits.
MAX_PAYMENT_ID_BODY = 48
MAX_TEXT = 140
_PAYMENT_ID = re.compile(r"pay_[A-Za-z0-9_-]{1,48}")
_ACCOUNT_NUMBER = re.compile(r"[A-Za-z0-9]{1,34}")


def is_payment_id(value: str) -> bool:
    return _PAYMENT_ID.fullmatch(value) is not None


PAYMENT_ID_RULE = f'must be "pay_" followed by 1 to {MAX_PAYMENT_ID_BODY} of [A-Za-z0-9_-]'


def validate_payment_request(request: PaymentRequest, account_field: str) -> None:
    out = Violations()
    if not is_payment_id(request.payment_id):
        out.add("payment_id", PAYMENT_ID_RULE)
    if not is_valid_id(request.customer_id, CUSTOMER_PREFIX):
        out.add("customer_id", id_rule(CUSTOMER_PREFIX))
    _check_amount(request.amount, out)
    if not is_currency(request.currency):
        out.add("currency", "must be an ISO 4217 code with minor units", "UNKNOWN_CURRENCY")
    if not _ACCOUNT_NUMBER.fullmatch(request.counterparty.account_number):
        out.add(f"{account_field}.account_number", "must be 1 to 34 of [A-Za-z0-9]")
    if len(request.counterparty.holder_name) > MAX_TEXT:
        out.add(f"{account_field}.holder_name", f"at most {MAX_TEXT} characters")
    if len(request.description) > MAX_TEXT:
        out.add("description", f"at most {MAX_TEXT} characters")
    out.raise_if_any()


def validate_refund(refund_id: str, payment_id: str, amount: int, reason: str) -> None:
    out = Violations()
    if not is_payment_id(refund_id):
        out.add("refund_id", PAYMENT_ID_RULE)
    if not is_payment_id(payment_id):
        out.add("payment_id", PAYMENT_ID_RULE)
    _check_amount(amount, out)
    if len(reason) > MAX_TEXT:
        out.add("reason", f"at most {MAX_TEXT} characters")
    out.raise_if_any()


def _check_amount(amount: int, out: Violations) -> None:
    if not 0 < amount <= MAX_AMOUNT:
        out.add("amount", f"must be between 1 and {MAX_AMOUNT} minor units")


def validate_payment_id(payment_id: str, field: str = "payment_id") -> None:
    out = Violations()
    if not is_payment_id(payment_id):
        out.add(field, PAYMENT_ID_RULE)
    out.raise_if_any()


def validate_note(text: str, field: str) -> None:
    out = Violations()
    if len(text) > MAX_TEXT:
        out.add(field, f"at most {MAX_TEXT} characters")
    out.raise_if_any()


def validate_run(run_id: str, statement_date: str) -> date:
    out = Violations()
    if not is_valid_id(run_id, RUN_PREFIX):
        out.add("run_id", id_rule(RUN_PREFIX))
    day: date | None = None
    try:
        day = date.fromisoformat(statement_date)
    except ValueError:
        out.add("statement_date", "must be a day as YYYY-MM-DD")
    out.raise_if_any()
    assert day is not None
    return day


def payment_not_found(payment_id: str) -> NotFound:
    return NotFound(
        "PAYMENT_NOT_FOUND",
        f"payment {payment_id} does not exist",
        metadata={"payment_id": payment_id},
    )
