"""The journal's chain as a pure decision: any change, loss or reordering is named exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ledger.domain.journal import (
    GENESIS,
    NotCanonical,
    canonical,
    chain,
    first_break,
    micros,
    record_hash,
)

bodies = st.lists(st.binary(min_size=1, max_size=40), min_size=2, max_size=30)


def records(
    payloads: list[bytes], start: int = 0, head: bytes = GENESIS
) -> list[tuple[int, bytes, bytes, bytes]]:
    links = chain(start, head, payloads)
    return [
        (link.sequence, link.prev_hash, link.hash, body)
        for link, body in zip(links, payloads, strict=True)
    ]


def test_the_encoding_is_fixed_and_refuses_what_it_cannot_say() -> None:
    assert canonical({"b": [1, None, True], "a": "é"}) == '{"a":"é","b":[1,null,true]}'.encode()
    with pytest.raises(NotCanonical, match=r"\$\.amount"):
        canonical({"amount": 1.5})
    with pytest.raises(NotCanonical):
        canonical({1: "x"})
    with pytest.raises(NotCanonical):
        micros(datetime(2026, 1, 1))
    instant = datetime(2026, 12, 4, 23, 0, 0, 123456, tzinfo=UTC)
    assert micros(instant) == 1_796_425_200_123_456
    assert micros(instant.astimezone(timezone(timedelta(hours=5)))) == micros(instant)


def test_a_known_record_hashes_to_a_known_value() -> None:
    # Pinned: a change of the encoding or of what is hashed must be a new version.
    assert record_hash(GENESIS, 1, b"{}").hex() == (
        "c7bed85e07a2cb1228573810ddbfb415cd9901462104d3f0834c544b138e312b"
    )
    assert record_hash(GENESIS, 2, b"{}") != record_hash(GENESIS, 1, b"{}")


@given(bodies)
def test_an_untouched_chain_verifies_from_the_start_and_from_any_head(
    payloads: list[bytes],
) -> None:
    chained = records(payloads)
    assert first_break(chained) is None
    middle = len(chained) // 2
    sequence, _, head, _ = chained[middle - 1]
    assert first_break(chained[middle:], after_sequence=sequence, after_hash=head) is None


@given(bodies, st.data())
def test_a_changed_body_is_named(payloads: list[bytes], data: st.DataObject) -> None:
    chained = records(payloads)
    index = data.draw(st.integers(0, len(chained) - 1))
    sequence, prev, stored, body = chained[index]
    chained[index] = (sequence, prev, stored, body + b"!")
    broken = first_break(chained)
    assert broken is not None
    assert broken.sequence == sequence


@given(bodies, st.data())
def test_a_deleted_record_is_named(payloads: list[bytes], data: st.DataObject) -> None:
    chained = records(payloads)
    index = data.draw(st.integers(0, len(chained) - 2))
    del chained[index]
    broken = first_break(chained)
    assert broken is not None
    assert broken.sequence == index + 1


@given(bodies, st.data())
def test_two_swapped_records_are_named(payloads: list[bytes], data: st.DataObject) -> None:
    chained = records(payloads)
    index = data.draw(st.integers(0, len(chained) - 2))
    chained[index], chained[index + 1] = chained[index + 1], chained[index]
    broken = first_break(chained)
    assert broken is not None
    assert broken.sequence == index + 1


@given(bodies, st.data())
def test_a_rehashed_suffix_verifies_alone_but_not_against_an_earlier_head(
    payloads: list[bytes], data: st.DataObject
) -> None:
    chained = records(payloads)
    index = data.draw(st.integers(1, len(chained) - 1))
    # Someone rewrites record `index` and re-hashes everything after it.
    _, prev, _, body = chained[index]
    forged = records([body + b"!", *(r[3] for r in chained[index + 1 :])], index, prev)
    tampered = chained[:index] + forged
    assert first_break(tampered) is None  # the chain alone cannot tell...
    # ...but a head published before the change can: it no longer matches.
    published_sequence, _, published_hash, _ = chained[-1]
    assert tampered[-1][2] != published_hash
    assert tampered[-1][0] == published_sequence
