"""Reading a journal body back into rows: what was written comes back, anything else is BadBody.

An import reads bodies from a file anyone could have written, so the reader must
refuse every malformed body with ``BadBody`` (a clear error naming the line), never
another exception.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from ledger.domain.journal import encode_built
from ledger.domain.journal_records import transfer_bodies, transfer_row_fields
from ledger.domain.model import TransferRequest
from ledger.domain.replay import BadBody, TransferChange, kind_of, read_body

from tests.ledger_builders import credit, debit, move
from tests.unit.test_ledger_batch import Book, batches, random_chart


@settings(max_examples=100, deadline=None)
@given(batches())
def test_every_transfer_body_reads_back_as_the_rows_it_was_built_from(
    plan: list[list[TransferRequest]],
) -> None:
    book = Book(*random_chart())
    book.run(move("tr_seed", debit("acct_d", 500), credit("acct_a", 500)))
    for batch in plan:
        outcome = book.run(*batch, now=datetime(2026, 12, 5, tzinfo=UTC))
        for record, body in zip(outcome.records, transfer_bodies(outcome), strict=True):
            change = read_body(encode_built(body))
            assert isinstance(change, TransferChange)
            assert kind_of(json.loads(encode_built(body))) == "transfer"
            assert transfer_row_fields(change.record) == transfer_row_fields(record)
            own = sorted(
                (e for e in outcome.entries if e.transfer_id == record.id),
                key=lambda e: (e.account_id, e.sequence),
            )
            assert list(change.entries) == own


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
# Near misses: the layout's shape with hostile members.
near_transfers = st.builds(
    lambda row, entries, opened, closed: ["transfer", row, entries, opened, closed],
    st.lists(json_values, min_size=13, max_size=13) | json_values,
    st.lists(st.lists(json_values, min_size=11, max_size=11) | json_values, max_size=2),
    json_values,
    json_values,
)


@settings(max_examples=200, deadline=None)
@given(json_values | near_transfers)
def test_anything_else_is_refused_as_a_bad_body(value: object) -> None:
    body = json.dumps(value).encode()
    try:
        read_body(body)
    except BadBody:
        return
    # What was read must have been a whole transfer of the spec's shape.
    assert isinstance(value, list)
    assert value[0] == "transfer"


def test_bytes_that_are_not_json_are_a_bad_body() -> None:
    for body in (b"", b"\xff", b"[1,", b"nul"):
        try:
            read_body(body)
        except BadBody:
            continue
        raise AssertionError(f"{body!r} was read")


def _transfer(**changes: object) -> list[object]:
    row: list[object] = [
        "tr_1", "MOVEMENT", True, None, None, "f" * 32,
        [["acct_a", "DEBIT", 5, "EUR"], ["acct_b", "CREDIT", 5, "EUR"]],
        None, None, None, None, 1_796_428_800_000_000, None,
    ]  # fmt: skip
    entry: list[object] = [
        "acct_a", 1, "MOVEMENT", "POSTED", "DEBIT", 5, 5, 0, 0, 0, 1_796_428_800_000_000,
    ]  # fmt: skip
    positions = {"created_at": 11, "metadata": 10, "legs": 6}
    entry_positions = {"amount": 5, "account_id": 0, "sequence": 1}
    for name, value in changes.items():
        if name.startswith("entry_"):
            entry[entry_positions[name.removeprefix("entry_")]] = value
        else:
            row[positions[name]] = value
    return ["transfer", row, [entry], [], []]


def test_a_well_formed_transfer_reads_and_each_hostile_member_is_a_bad_body() -> None:
    assert isinstance(read_body(json.dumps(_transfer()).encode()), TransferChange)
    hostile: list[dict[str, object]] = [
        {"created_at": 10**20},  # past what an instant can be
        {"created_at": "1796428800000000"},
        {"metadata": {"why": ["not", "text"]}},
        {"metadata": ["a", "b"]},
        {"legs": [["acct_a", "DEBIT", "x", "EUR"]]},
        {"legs": "acct_a"},
        {"entry_amount": 5.5},
        {"entry_amount": True},
        {"entry_amount": "5"},
        {"entry_sequence": None},
        {"entry_account_id": 7},
    ]
    for changes in hostile:
        try:
            read_body(json.dumps(_transfer(**changes)).encode())
        except BadBody:
            continue
        raise AssertionError(f"{changes} was read")


def test_layout_1_holds_that_are_not_lists_are_a_bad_body() -> None:
    keyed = {"kind": "transfer", "transfer": {}, "holds": ["not", "an", "object"]}
    try:
        read_body(json.dumps(keyed).encode())
    except BadBody:
        return
    raise AssertionError("read")
