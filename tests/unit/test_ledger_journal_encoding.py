"""The journal's encoders write the same bytes; the builders give them only what they can say.

``canonical`` (checked, for values from anywhere) and ``encode_built`` (the write
path's, for the builders' bodies) use orjson; the spec's reference is the standard
library's encoder (``reference_canonical``). A difference would fork the chain
between a writer and an offline verifier, so it is held here over any JSON value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from chassis.kernel.audit import Requester
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger.domain.journal import NotCanonical, canonical, encode_built, reference_canonical
from ledger.domain.journal_records import account_opened_body, transfer_bodies
from ledger.domain.model import Account, ExpirePendingOp, NormalSide, TransferRequest

from tests.ledger_builders import credit, debit, hold, move
from tests.unit.test_ledger_batch import Book, batches, random_chart

# Any code point, lone surrogates included (text that is not Unicode must be refused
# by both, never written by one).
any_text = st.text(st.characters(codec=None, categories=None), max_size=12)
any_int = st.integers(min_value=-(2**70), max_value=2**70)  # past orjson's 64 bits
atoms = st.none() | st.booleans() | any_int | any_text
json_values = st.recursive(
    atoms,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(any_text, inner, max_size=4)
    ),
    max_leaves=25,
)


def _outcome(encoder: object, value: object) -> bytes | type[Exception]:
    try:
        return encoder(value)  # type: ignore[operator, no-any-return]
    except NotCanonical:
        return NotCanonical


@settings(max_examples=600, deadline=None)
@given(json_values)
def test_both_encoders_write_the_references_bytes_or_refuse_with_it(value: object) -> None:
    expected = _outcome(reference_canonical, value)
    assert _outcome(canonical, value) == expected
    assert _outcome(encode_built, value) == expected


def test_keys_sort_by_code_point_across_planes() -> None:
    # UTF-16 order would put U+1F600 before U+FF61; code points (and UTF-8) after.
    value = {"\U0001f600": 1, "\uff61": 2, "Z": 3, "a": 4, "é": 5}
    assert canonical(value) == reference_canonical(value)
    assert canonical(value).decode() == '{"Z":3,"a":4,"é":5,"\uff61":2,"\U0001f600":1}'


class Colour(enum.Enum):
    RED = "red"


class Word(enum.StrEnum):
    HELLO = "hello"


class Count(enum.IntEnum):
    ONE = 1


@dataclass
class Point:
    x: int


@pytest.mark.parametrize(
    "value",
    [
        1.5,
        float("nan"),
        datetime(2026, 1, 1, tzinfo=UTC),
        Colour.RED,
        Point(1),
        b"bytes",
        {1: "a non-string key"},
        {"set": {1, 2}},
    ],
    ids=repr,
)
def test_values_without_a_canonical_form_are_refused(value: object) -> None:
    with pytest.raises(NotCanonical):
        canonical({"value": value})
    with pytest.raises(NotCanonical):
        reference_canonical({"value": value})


def test_subclasses_of_text_and_integers_are_written_as_their_values() -> None:
    value = {"word": Word.HELLO, "count": Count.ONE}
    expected = b'{"count":1,"word":"hello"}'
    assert reference_canonical(value) == canonical(value) == encode_built(value) == expected


@pytest.mark.parametrize(
    "value", [datetime(2026, 1, 1, tzinfo=UTC), Point(1), b"bytes", {1: "key"}, {1, 2}], ids=repr
)
def test_the_write_paths_encoder_refuses_what_orjson_would_give_a_form_of_its_own(
    value: object,
) -> None:
    with pytest.raises(NotCanonical):
        encode_built({"value": value})


@settings(max_examples=150, deadline=None)
@given(batches(), st.integers(min_value=0, max_value=2))
def test_every_body_the_builders_make_is_canonical_and_encodes_the_same_both_ways(
    plan: list[list[TransferRequest]], expiring: int
) -> None:
    # The write path skips canonical's walk: this holds its builders to it, over
    # every kind of record a batch writes (applied, refused, holds opened and
    # closed, reversals, expiries).
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    book = Book(*random_chart())
    outcomes = [
        book.run(
            move("tr_seed", debit("acct_d", 500), credit("acct_a", 500)),
            *[
                hold(f"tr_exp_{n}", debit("acct_a", 1), credit("acct_c", 1), timeout=timedelta(0))
                for n in range(expiring)
            ],
        )
    ]
    if expiring:
        expiries = [
            TransferRequest(f"exp_{n}", ExpirePendingOp(f"tr_exp_{n}")) for n in range(expiring)
        ]
        outcomes.append(book.run(*expiries, now=now + timedelta(seconds=1)))
        assert all(result.ok for result in outcomes[-1].results)
    outcomes += [book.run(*batch, now=now + timedelta(seconds=1)) for batch in plan]
    written = 0
    for outcome in outcomes:
        for body in transfer_bodies(outcome):
            assert encode_built(body) == canonical(body) == reference_canonical(body)
            written += 1
    assert written >= 1 + len(plan)


@given(
    st.text(min_size=1, max_size=8),
    st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3),
    st.none() | st.builds(Requester, st.text(max_size=6), st.none() | st.text(max_size=6)),
)
def test_an_opened_accounts_body_is_canonical(
    account_id: str, metadata: dict[str, str], requester: Requester | None
) -> None:
    opened = Account(
        id=account_id,
        currency="EUR",
        normal_side=NormalSide.CREDIT,
        debits_must_not_exceed_credits=True,
        credits_must_not_exceed_debits=False,
        created_at=datetime(2026, 12, 5, tzinfo=UTC),
        metadata=tuple(sorted(metadata.items())),
        created_by=requester,
    )
    body = account_opened_body(opened)
    assert encode_built(body) == canonical(body) == reference_canonical(body)
