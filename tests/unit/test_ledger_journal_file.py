"""The journal's export file (no I/O beyond memory): bodies travel verbatim, lines are checked."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from ledger.adapters import journal_file
from ledger.domain.checkpoint import check_chain
from ledger.domain.journal import GENESIS, canonical, chain
from ledger.domain.journal_records import JournalRow
from ledger.domain.replay import TransferChange, read_body

AT = datetime(2026, 12, 5, 0, 0, 0, 250, tzinfo=UTC)
BODY = canonical(
    {
        "kind": "transfer",
        "transfer": {
            "id": "tr_ü",
            "kind": "MOVEMENT",
            "ok": True,
            "fingerprint": "f",
            "legs": "acct_a:1:5:EUR;acct_b:2:5:EUR",
            "metadata": '{"note":"a \\"quoted\\" ünïcode\\n"}',
            "created_at": 1_764_892_800_000_250,
            "requester": None,
        },
        "entries": [],
        "holds": {"opened": [["tr_h", None]], "closed": ["tr_old"]},
    }
)


def records(bodies: list[bytes]) -> list[JournalRow]:
    return [
        JournalRow(
            sequence=link.sequence,
            prev_hash=link.prev_hash,
            hash=link.hash,
            body=body,
            kind="transfer",
            recorded_at=AT,
        )
        for link, body in zip(chain(0, GENESIS, bodies), bodies, strict=True)
    ]


def test_a_written_file_reads_back_with_the_bodies_byte_for_byte() -> None:
    written = records([BODY, BODY, canonical({"kind": "transfer", "n": 3})])
    out = io.BytesIO()
    head = (3, written[-1].hash)
    assert journal_file.write(out, head, written) == 3
    read_head, read = journal_file.read(io.BytesIO(out.getvalue()))
    assert read_head == head
    assert list(read) == written
    assert check_chain(records([BODY]), head=(1, records([BODY])[0].hash)) is None


def test_a_body_reads_back_into_the_rows_it_holds() -> None:
    change = read_body(BODY)
    assert isinstance(change, TransferChange)
    assert change.record.id == "tr_ü"
    assert [(leg.account_id, leg.amount) for leg in change.record.legs] == [
        ("acct_a", 5),
        ("acct_b", 5),
    ]
    assert change.record.metadata == (("note", 'a "quoted" ünïcode\n'),)
    assert change.record.created_at == datetime(2025, 12, 5, 0, 0, 0, 250, tzinfo=UTC)
    assert (change.holds_opened, change.holds_closed) == ((("tr_h", None),), ("tr_old",))


@pytest.mark.parametrize(
    "text",
    [
        b'{"format":"something else","head":{"hash":"00","sequence":0},"version":1}\n',
        b"not json\n",
    ],
)
def test_a_file_that_is_not_an_export_is_refused_at_its_header(text: bytes) -> None:
    with pytest.raises(journal_file.BadExport, match="line 1"):
        journal_file.read(io.BytesIO(text))


def test_a_line_that_is_not_a_record_is_named() -> None:
    text = journal_file.header((1, bytes(32))) + b'{"sequence":1,"hash":"zz"}\n'
    _, read = journal_file.read(io.BytesIO(text))
    with pytest.raises(journal_file.BadExport, match="line 2"):
        list(read)
