"""The shared kernel: money, ids, page tokens, errors."""

from __future__ import annotations

import base64
import json

import pytest
from chassis.kernel.errors import FieldViolation, InvalidArgument, Violations
from chassis.kernel.ids import is_valid_id, new_id
from chassis.kernel.money import Money, UnknownCurrency, currency
from chassis.kernel.pagination import encode_page_token, is_sequence, parse_page
from chassis.kernel.text import CONTROL_RULE, check_text, text_problem


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


def _any(_after: str) -> bool:
    return True


def _account(after: str) -> bool:
    return is_valid_id(after, "acct")


def test_page_tokens_round_trip_and_refuse_other_filters() -> None:
    token = encode_page_token("acct_b", {"customer_id": "cus_1"})
    page = parse_page(10, token, {"customer_id": "cus_1"}, after_rule=_account)
    assert (page.size, page.after) == (10, "acct_b")
    assert parse_page(0, "", {}, after_rule=_any).size == 100
    with pytest.raises(InvalidArgument) as other:
        parse_page(10, token, {"customer_id": "cus_2"}, after_rule=_account)
    assert other.value.violations[0].field == "page_token"
    with pytest.raises(InvalidArgument):
        parse_page(10, "not-a-token!", {}, after_rule=_any)
    with pytest.raises(InvalidArgument) as size:
        parse_page(5000, "", {}, after_rule=_any)
    assert size.value.violations[0].field == "page_size"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _forged(after: object, filters: dict[str, object]) -> str:
    """A token with the right digest (anyone can compute it) around any position."""
    issued = encode_page_token("x", filters)
    digest = json.loads(base64.urlsafe_b64decode(issued + "=" * (-len(issued) % 4)))["f"]
    return _b64(json.dumps({"a": after, "f": digest}).encode())


# Tokens no service issued: deep nesting, non-ASCII, bad UTF-8, other JSON shapes, huge.
GARBAGE_TOKENS = [
    _b64(b"[" * 100_000),
    _b64(b'{"a":' * 5_000),
    _b64(b"[" * 300),
    "ñandú",
    "eyJhIjoiYSJ9\x00",
    _b64(b"\xff\xfe\x00"),
    _b64(b'"just a string"'),
    _b64(b"[1, 2]"),
    _b64(b'{"a": 7, "f": "0"}'),
    _b64(b'{"a": "acct_a"}'),
    _b64(b'{"a": "acct_a", "f": ["x"]}'),
    _b64(b'{"a": "acct_a", "f": "0", "extra": 1}'),
    "e30" + "A" * 600,
    "e30*",
    "====",
]


@pytest.mark.parametrize("token", GARBAGE_TOKENS)
def test_a_token_we_could_not_have_issued_is_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        parse_page(10, token, {}, after_rule=_any)
    assert [(v.field, v.description) for v in refused.value.violations] == [
        ("page_token", "is not a token this service issued")
    ]


@pytest.mark.parametrize(
    "after",
    ["²", "١٢٣", "-1", "0", " 7", "1e5", "9223372036854775808", "9" * 30, "", "\x00", "acct_a"],
)
def test_a_forged_position_must_be_a_sequence_number_where_the_list_pages_by_one(
    after: str,
) -> None:
    filters: dict[str, object] = {"account_id": "acct_a"}
    with pytest.raises(InvalidArgument) as refused:
        parse_page(10, _forged(after, filters), filters, after_rule=is_sequence)
    assert refused.value.violations[0].field == "page_token"
    page = parse_page(10, _forged("9223372036854775807", filters), filters, after_rule=is_sequence)
    assert page.after == "9223372036854775807"


@pytest.mark.parametrize("after", ["acct_\x00", "acct_" + "a" * 61, "cus_a", 7, None, ["acct_a"]])
def test_a_forged_position_must_be_an_id_where_the_list_pages_by_id(after: object) -> None:
    with pytest.raises(InvalidArgument) as refused:
        parse_page(10, _forged(after, {}), {}, after_rule=_account)
    assert refused.value.violations[0].field == "page_token"


def test_the_text_rule_refuses_nul_and_control_characters_but_not_line_breaks() -> None:
    for bad in ("a\x00b", "\x00", "\x07", "\x1b[31m", "\x7f", "\x85", "\x9f"):
        assert text_problem(bad, 10) == CONTROL_RULE, repr(bad)
    for fine in ("", "Ada Lovelace", "é 名前 😀", "line\nbreak\r\n\ttab", "\u202e", "\ufeff"):
        assert text_problem(fine, 20) is None, repr(fine)
    assert text_problem("x" * 11, 10) == "must be at most 10 characters"
    out = Violations()
    check_text(out, "name", "  ", 10, required=True)
    check_text(out, "note", "a\x00", 10)
    check_text(out, "ok", "fine", 10)
    assert [(v.field, v.description) for v in out.items] == [
        ("name", "is required"),
        ("note", CONTROL_RULE),
    ]


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


def test_a_page_is_cut_from_one_item_more_and_its_token_resumes_after_its_last_item() -> None:
    items = [f"acct_{i:03d}" for i in range(7)]
    filters = {"customer_id": "cus_1"}
    request = parse_page(3, "", filters, after_rule=lambda value: value.startswith("acct_"))
    assert request.fetch == 4
    first = request.page(items[: request.fetch], lambda item: item)
    assert first.items == ["acct_000", "acct_001", "acct_002"]
    resumed = parse_page(
        3, first.next_page_token, filters, after_rule=lambda v: v.startswith("acct_")
    )
    assert resumed.after == "acct_002"
    # The last page: fewer than fetch items came back, so there is no next token.
    last = resumed.page(items[5:], lambda item: item)
    assert last.items == ["acct_005", "acct_006"]
    assert last.next_page_token == ""
    # Exactly a page's worth left: still no token (nothing follows it).
    assert resumed.page(items[4:7], lambda item: item).next_page_token == ""
