"""Payments' limits, no I/O: amounts per currency, derived ledger ids, house account capacity,
who may review a payment, and settings that would break them refused at start."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from chassis.kernel.audit import Requester
from chassis.kernel.errors import DomainError, ErrorCategory, InvalidArgument, PermissionDenied
from chassis.kernel.ids import is_valid_id
from chassis.kernel.money import MAX_AMOUNT
from hypothesis import given
from hypothesis import strategies as st
from payments.config import PaymentsSettings
from payments.domain import validation
from payments.domain.ledger_plan import customer_account_id, house_account_ids
from payments.domain.limits import AmountLimits, Capacity, RunningTotals, fullest
from payments.domain.model import BankAccount, LedgerStep, Payment, PaymentRequest, transfer_id
from payments.domain.states import PaymentKind
from payments.service_layer.use_cases import Caller

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ID_BODY = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
CURRENCIES = st.sampled_from(["EUR", "JPY", "KWD", "CLF", "USD"])


def request(**overrides: object) -> PaymentRequest:
    values: dict[str, object] = {
        "payment_id": "pay_1",
        "kind": PaymentKind.PAYOUT,
        "customer_id": "cus_a",
        "amount": 1_000,
        "currency": "EUR",
        "counterparty": BankAccount("DE0012345678", "Ada"),
    }
    values.update(overrides)
    return PaymentRequest(**values)  # type: ignore[arg-type]


def refused_fields(req: PaymentRequest, **kwargs: object) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as refused:
        validation.validate_payment_request(req, "destination", **kwargs)  # type: ignore[arg-type]
    return {v.field: v.reason for v in refused.value.violations}


# --- ids derived from ids at their maximum ------------------------------------------------


@given(body=ID_BODY.filter(lambda b: 1 <= len(b) <= 60), currency=CURRENCIES)
def test_every_valid_customer_id_gives_a_ledger_account_id_of_at_most_64_characters(
    body: str, currency: str
) -> None:
    account = customer_account_id(f"cus_{body}", currency)
    assert is_valid_id(account, "acct")
    # Within the ledger's contract ("acct_" + 60) and within every ledger schema deployed.
    assert len(account) <= 64


def test_the_longest_ids_of_each_kind_derive_valid_ids_and_fit_their_columns() -> None:
    for length in range(1, 61):
        account = customer_account_id("cus_" + "x" * length, "EUR")
        assert is_valid_id(account, "acct"), (length, account)
        assert len(account) <= 64, (length, account)
    longest_payment = "pay_" + "p" * validation.MAX_PAYMENT_ID_BODY
    for step in LedgerStep:
        assert is_valid_id(transfer_id(longest_payment, step), "tr")
    validation.validate_payment_request(
        request(payment_id=longest_payment, customer_id="cus_" + "c" * 60), "destination"
    )


def test_a_customer_cannot_choose_an_id_that_spells_another_customers_digest_account() -> None:
    victim = "cus_" + "v" * 60  # too long to spell out: its account holds a digest of its id
    digest_form = "cus_h" + hashlib.sha256(victim.encode()).hexdigest()[:40]
    assert is_valid_id(digest_form, "cus")
    assert customer_account_id(digest_form, "EUR") != customer_account_id(victim, "EUR")


@given(
    first=ID_BODY.filter(lambda b: 1 <= len(b) <= 60),
    second=ID_BODY.filter(lambda b: 1 <= len(b) <= 60),
)
def test_distinct_customers_never_share_an_account(first: str, second: str) -> None:
    if first != second:
        assert customer_account_id(f"cus_{first}", "EUR") != customer_account_id(
            f"cus_{second}", "EUR"
        )


# --- amounts -------------------------------------------------------------------------------


def test_the_default_maximum_follows_the_currency_exponent_and_settings_override_it() -> None:
    limits = AmountLimits()
    assert limits.max_amount("JPY") == 10**9  # exponent 0
    assert limits.max_amount("EUR") == 10**11  # exponent 2
    assert limits.max_amount("KWD") == 10**12  # exponent 3
    assert limits.max_amount("CLF") == 10**13  # exponent 4
    custom = AmountLimits(max_major_units=5, per_currency={"EUR": 77})
    assert (custom.max_amount("EUR"), custom.max_amount("USD")) == (77, 500)


def test_an_amount_above_its_currencys_maximum_is_refused_at_the_edge() -> None:
    limits = AmountLimits(per_currency={"EUR": 1_000})
    validation.validate_payment_request(request(amount=1_000), "destination", limits)
    assert refused_fields(request(amount=1_001), limits=limits) == {"amount": "AMOUNT_OUT_OF_RANGE"}
    # Without settings the contract's int64 range still holds for any currency.
    assert refused_fields(request(amount=MAX_AMOUNT)) == {"amount": "AMOUNT_OUT_OF_RANGE"}


def test_an_amount_whose_fee_takes_it_past_int64_is_refused_at_the_edge() -> None:
    limits = AmountLimits(per_currency={"EUR": MAX_AMOUNT})
    fits = request(amount=MAX_AMOUNT - 100)
    validation.validate_payment_request(fits, "destination", limits, 100)
    assert refused_fields(request(amount=MAX_AMOUNT - 50), limits=limits, fee=100) == {
        "amount": "AMOUNT_OUT_OF_RANGE"
    }


# --- house accounts --------------------------------------------------------------------------


def test_usage_counts_pending_as_posted_on_the_fuller_side() -> None:
    half = MAX_AMOUNT // 2
    assert RunningTotals(debits_posted=half, debits_pending=half).usage() == pytest.approx(1.0)
    assert RunningTotals(credits_posted=half).usage() == pytest.approx(0.5)
    assert RunningTotals().usage() == 0


def test_new_payments_stop_at_the_ratio_with_a_reason_naming_the_account() -> None:
    clearing, fees, _ = house_account_ids("EUR")
    totals = {
        clearing: RunningTotals(debits_posted=int(MAX_AMOUNT * 0.95)),
        fees: RunningTotals(credits_posted=10),
    }
    capacity = fullest("EUR", totals)
    assert capacity.account_id == clearing
    capacity.check(0.96)
    with pytest.raises(DomainError) as refused:
        capacity.check(0.9)
    assert refused.value.reason == "CURRENCY_CAPACITY_EXHAUSTED"
    assert refused.value.category is ErrorCategory.RESOURCE_EXHAUSTED
    assert refused.value.metadata == {"currency": "EUR", "account_id": clearing}
    assert fullest("USD", {}) == Capacity("USD", "", 0.0)


# --- who may review --------------------------------------------------------------------------


def created_by(client_id: str) -> Payment:
    return Payment.create(
        request(requested_by=Requester(client_id, None, "req-1")),
        fee=0,
        ledger_account_id="acct_x_EUR",
        now=NOW,
    )


def test_a_payment_is_reviewed_by_another_client_than_its_creator_and_never_by_a_customer() -> None:
    payment = created_by("cli_maker")
    assert payment.created_by == Requester("cli_maker", None, "req-1")
    Caller(client_id="cli_checker").check_reviewer(payment)
    with pytest.raises(PermissionDenied) as same:
        Caller(client_id="cli_maker").check_reviewer(payment)
    assert same.value.reason == "REVIEWER_IS_REQUESTER"
    with pytest.raises(PermissionDenied) as customer:
        Caller(client_id="cli_checker", customer_id="cus_a").check_reviewer(payment)
    assert customer.value.reason == "SERVICE_CALLER_REQUIRED"
    # Who asked is not part of what was asked: a replay by another client is still a replay.
    assert request(requested_by=Requester("cli_a")).fingerprint() == request().fingerprint()


# --- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variable",
    [
        {"PAYMENTS_PAYOUT_FEE_FIXED": '{"EUR": -1}'},
        {"PAYMENTS_AMOUNT_MAX": '{"EURO": 5}'},
        {"PAYMENTS_FRAUD_MAX_AMOUNT": '{"EUR": 9223372036854775808}'},
        {"PAYMENTS_AMOUNT_MAX_MAJOR_UNITS": str(MAX_AMOUNT)},
        {"PAYMENTS_HOUSE_ACCOUNT_STOP_RATIO": "1.5"},
    ],
)
def test_settings_that_would_break_the_limits_fail_at_start(
    monkeypatch: pytest.MonkeyPatch, variable: dict[str, str]
) -> None:
    for name, value in variable.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=next(iter(variable)).removeprefix("PAYMENTS_").lower()):
        PaymentsSettings()
