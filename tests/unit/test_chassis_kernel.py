"""The shared kernel: money, ids, page tokens, errors."""

from __future__ import annotations

import pytest
from chassis.kernel.errors import FieldViolation, InvalidArgument, Violations
from chassis.kernel.ids import is_valid_id, new_id
from chassis.kernel.money import Money, UnknownCurrency, currency
from chassis.kernel.pagination import encode_page_token, parse_page


def test_currency_exponents_come_from_iso_4217() -> None:
    assert currency("EUR").exponent == 2
    assert currency("JPY").exponent == 0
    assert currency("BHD").exponent == 3
    for bad in ("eur", "EURO", "ZZZ", "XAU", ""):
        with pytest.raises(UnknownCurrency):
            currency(bad)


def test_money_is_integer_minor_units() -> None:
    assert str(Money(12345, "EUR")) == "123.45 EUR"
    assert str(Money(5, "JPY")) == "5 JPY"
    assert str(Money(1, "BHD")) == "0.001 BHD"
    with pytest.raises(TypeError):
        Money(1.5, "EUR")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outside"):
        Money(-1, "EUR")
    with pytest.raises(ValueError, match="cannot combine"):
        _ = Money(1, "EUR") + Money(1, "USD")
    assert Money(7, "EUR") + Money(3, "EUR") == Money(10, "EUR")


def test_ids_are_prefixed_and_sortable() -> None:
    first, second = new_id("tr"), new_id("tr")
    assert is_valid_id(first, "tr")
    assert first < second or first[:13] == second[:13]  # ULIDs sort by time (ms)
    assert not is_valid_id("acct_x", "tr")
    assert not is_valid_id("tr_", "tr")
    assert not is_valid_id("tr_a b", "tr")
    assert is_valid_id("tr_" + "a" * 60, "tr")
    assert not is_valid_id("tr_" + "a" * 61, "tr")


def test_page_tokens_round_trip_and_refuse_other_filters() -> None:
    token = encode_page_token("acct_b", {"customer_id": "cus_1"})
    page = parse_page(10, token, {"customer_id": "cus_1"})
    assert (page.size, page.after) == (10, "acct_b")
    assert parse_page(0, "", {}).size == 100
    with pytest.raises(InvalidArgument) as other:
        parse_page(10, token, {"customer_id": "cus_2"})
    assert other.value.violations[0].field == "page_token"
    with pytest.raises(InvalidArgument):
        parse_page(10, "not-a-token!", {})
    with pytest.raises(InvalidArgument) as size:
        parse_page(5000, "", {})
    assert size.value.violations[0].field == "page_size"


def test_violations_collect_every_field_then_raise_once() -> None:
    out = Violations()
    out.raise_if_any()
    out.add("a", "is wrong")
    out.add("b", "is wrong too", "WHY")
    with pytest.raises(InvalidArgument) as error:
        out.raise_if_any()
    assert error.value.violations == (
        FieldViolation("a", "is wrong"),
        FieldViolation("b", "is wrong too", "WHY"),
    )
    assert error.value.reason == "INVALID_ARGUMENT"
