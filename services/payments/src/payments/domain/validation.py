"""Stateless checks of what a client asked for, before anything is read or written."""

from __future__ import annotations

import re
from datetime import date, timedelta

from chassis.kernel.errors import NotFound, Violations
from chassis.kernel.ids import id_rule, is_valid_id, require_id
from chassis.kernel.money import MAX_AMOUNT, is_currency
from chassis.kernel.text import check_text
from screening.countries import is_alpha2

from payments.domain.ledger_plan import customer_account_id
from payments.domain.limits import AmountLimits
from payments.domain.model import LedgerStep, PaymentRequest, transfer_id

PAYMENT_PREFIX = "pay"
CUSTOMER_PREFIX = "cus"
RUN_PREFIX = "rec"
# Short enough that every ledger transfer id derived from it ("tr_<id>_<step>") fits.
MAX_PAYMENT_ID_BODY = 48
MAX_TEXT = 140
AMOUNT_OUT_OF_RANGE = "AMOUNT_OUT_OF_RANGE"
_PAYMENT_ID = re.compile(r"pay_[A-Za-z0-9_-]{1,48}")
_ACCOUNT_NUMBER = re.compile(r"[A-Za-z0-9]{1,34}")
# A calendar day as ISO 8601 writes it, and only so (date.fromisoformat also takes
# "20240101", "2024-W01-1" and non-ASCII digits).
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# A statement exists for a day that has begun somewhere: up to one day past today (UTC).
STATEMENT_LEAD = timedelta(days=1)


def is_payment_id(value: str) -> bool:
    return _PAYMENT_ID.fullmatch(value) is not None


PAYMENT_ID_RULE = f'must be "pay_" followed by 1 to {MAX_PAYMENT_ID_BODY} of [A-Za-z0-9_-]'


def validate_payment_request(
    request: PaymentRequest,
    account_field: str,
    limits: AmountLimits | None = None,
    fee: int = 0,
) -> None:
    """Everything about one creation that can be known without reading anything.

    ``fee`` is what the payment would be charged; amount plus fee is one ledger leg.
    """
    out = Violations()
    if not is_payment_id(request.payment_id):
        out.add("payment_id", PAYMENT_ID_RULE)
    if not is_valid_id(request.customer_id, CUSTOMER_PREFIX):
        out.add("customer_id", id_rule(CUSTOMER_PREFIX))
    if not is_currency(request.currency):
        out.add("currency", "must be an ISO 4217 code with minor units", "UNKNOWN_CURRENCY")
        _check_amount(request.amount, out)
    else:
        top = (limits or AmountLimits()).max_amount(request.currency)
        _check_amount(request.amount, out, top, request.currency, fee)
    if not out:
        _check_derived_ids(request, out)
    if not _ACCOUNT_NUMBER.fullmatch(request.counterparty.account_number):
        out.add(f"{account_field}.account_number", "must be 1 to 34 of [A-Za-z0-9]")
    check_text(out, f"{account_field}.holder_name", request.counterparty.holder_name, MAX_TEXT)
    country = request.counterparty.country
    if country and not is_alpha2(country):
        out.add(
            f"{account_field}.country",
            'must be an ISO 3166-1 alpha-2 code in upper case, e.g. "DE"',
            "UNKNOWN_COUNTRY",
        )
    check_text(out, "description", request.description, MAX_TEXT)
    out.raise_if_any()


def validate_refund(refund_id: str, payment_id: str, amount: int, reason: str) -> None:
    out = Violations()
    if not is_payment_id(refund_id):
        out.add("refund_id", PAYMENT_ID_RULE)
    if not is_payment_id(payment_id):
        out.add("payment_id", PAYMENT_ID_RULE)
    _check_amount(amount, out)
    check_text(out, "reason", reason, MAX_TEXT)
    out.raise_if_any()


def _check_amount(
    amount: int, out: Violations, top: int = MAX_AMOUNT, currency: str = "", fee: int = 0
) -> None:
    unit = f" of {currency}" if currency else ""
    if not 0 < amount <= top:
        out.add("amount", f"must be between 1 and {top} minor units{unit}", AMOUNT_OUT_OF_RANGE)
    elif amount + fee > MAX_AMOUNT:
        out.add(
            "amount",
            f"with its fee of {fee} exceeds the {MAX_AMOUNT} minor units one booking can hold",
            AMOUNT_OUT_OF_RANGE,
        )


def _check_derived_ids(request: PaymentRequest, out: Violations) -> None:
    """The ledger ids derived from a valid request are valid by the ledger's contract.

    True by construction (tested for every length); checked here too because a
    request that broke it would fail in the ledger only after it was accepted.
    """
    account = customer_account_id(request.customer_id, request.currency)
    if not is_valid_id(account, "acct"):
        out.add("customer_id", f"gives the ledger account id {account}, which is not valid")
    for step in LedgerStep:
        if not is_valid_id(transfer_id(request.payment_id, step), "tr"):
            out.add("payment_id", "is too long for the ledger transfer ids derived from it")
            return


def validate_payment_id(payment_id: str, field: str = "payment_id") -> None:
    out = Violations()
    if not is_payment_id(payment_id):
        out.add(field, PAYMENT_ID_RULE)
    out.raise_if_any()


def validate_note(text: str, field: str) -> None:
    out = Violations()
    check_text(out, field, text, MAX_TEXT)
    out.raise_if_any()


def validate_customer_id(customer_id: str, field: str = "customer_id") -> None:
    require_id(customer_id, CUSTOMER_PREFIX, field)


def validate_customer_filter(customer_id: str, field: str = "customer_id") -> None:
    """A list's customer filter: empty (every customer) or a customer id."""
    require_id(customer_id, CUSTOMER_PREFIX, field, optional=True)


def _check_run_id(out: Violations, run_id: str) -> None:
    if not is_valid_id(run_id, RUN_PREFIX):
        out.add("run_id", id_rule(RUN_PREFIX))


def validate_run_id(run_id: str) -> None:
    require_id(run_id, RUN_PREFIX, "run_id")


def validate_run(run_id: str, statement_date: str, today: date) -> date:
    """The statement's day: ISO ``YYYY-MM-DD`` and no later than ``today`` plus a day."""
    out = Violations()
    _check_run_id(out, run_id)
    day: date | None = None
    if _DAY.fullmatch(statement_date):
        try:
            day = date.fromisoformat(statement_date)
        except ValueError:
            out.add("statement_date", "is no calendar day")
    else:
        out.add("statement_date", "must be a day as YYYY-MM-DD")
    latest = today + STATEMENT_LEAD
    if day is not None and day > latest:
        out.add(
            "statement_date",
            f"must be no later than {latest.isoformat()}: a day that has not begun has no "
            "statement yet",
            "STATEMENT_DATE_IN_FUTURE",
        )
    out.raise_if_any()
    assert day is not None
    return day


def payment_not_found(payment_id: str) -> NotFound:
    return NotFound(
        "PAYMENT_NOT_FOUND",
        f"payment {payment_id} does not exist",
        metadata={"payment_id": payment_id},
    )
