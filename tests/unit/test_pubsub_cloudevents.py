"""CloudEvents attributes (binary mode) and decoding received messages, without I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import pytest
from astra.ledger.v1 import events_pb2 as ev
from chassis.events import cloudevents as ce
from chassis.events.decoding import (
    UndecodableEvent,
    decode,
    decode_event,
    import_contract_events,
)
from chassis.events.tail import render


@dataclass
class Received:
    """A message as the client library hands it over: data, attributes and ids."""

    data: bytes
    attributes: Mapping[str, str]
    ordering_key: str = "tr_1"
    message_id: str = "101"
    delivery_attempt: int | None = None
    publish_time: datetime | None = None
    acked: list[str] = field(default_factory=list)

    def ack(self) -> None:
        self.acked.append("ack")

    def nack(self) -> None:
        self.acked.append("nack")


def attributes_for(event_id: str = "ev-1", subject: str = "", **extra: str) -> dict[str, str]:
    return ce.binary_attributes(
        event_id=event_id,
        event_type="astra.ledger.v1.TransferPosted",
        source="//astra.ledger",
        time=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        subject=subject,
        headers=extra or None,
    )


def test_binary_mode_attributes_name_the_event_and_its_media_type() -> None:
    assert attributes_for() == {
        "ce-id": "ev-1",
        "ce-type": "astra.ledger.v1.TransferPosted",
        "ce-source": "//astra.ledger",
        "ce-specversion": "1.0",
        "ce-time": "2026-01-02T03:04:05.678901Z",
        "content-type": "application/protobuf",
    }


def test_extra_headers_are_added_but_never_replace_the_event_context() -> None:
    attributes = attributes_for(traceparent="00-abc-def-01", **{"ce-id": "forged"})
    assert attributes["traceparent"] == "00-abc-def-01"
    assert attributes["ce-id"] == "ev-1"
    # A forged subject is dropped when the event has none of its own.
    assert "ce-subject" not in attributes_for(**{"ce-subject": "forged"})
    assert attributes_for(subject="tr_7", **{"ce-subject": "forged"})["ce-subject"] == "tr_7"


def test_times_are_rfc3339_utc_and_read_back_exactly() -> None:
    local = datetime(2026, 5, 1, 12, 0, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    text = ce.format_time(local)
    assert text == "2026-05-01T10:00:00.000005Z"
    assert ce.parse_time(text) == local
    assert ce.format_time(datetime(2026, 5, 1, 10, 0)) == "2026-05-01T10:00:00.000000Z"


def test_source_of_a_context() -> None:
    assert ce.source_of("payments") == "//astra.payments"


def test_decode_event_reads_the_proto_and_its_context() -> None:
    posted = ev.TransferPosted(transfer_id="tr_1", metadata={"k": "v"})
    event = decode_event(
        Received(posted.SerializeToString(), attributes_for(subject="tr_1"), delivery_attempt=3),
        ev.TransferPosted,
    )
    assert event.message == posted
    assert event.id == "ev-1"
    assert event.type == "astra.ledger.v1.TransferPosted"
    assert event.time == datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert (event.ordering_key, event.message_id, event.delivery_attempt) == ("tr_1", "101", 3)
    assert event.subject == "tr_1"


@pytest.mark.parametrize(
    ("attributes", "data", "reason"),
    [
        ({}, b"", "MISSING_ATTRIBUTE"),
        ({**attributes_for(), "ce-id": "x" * 65}, b"", "INVALID_ATTRIBUTE"),
        (
            {**attributes_for(), "content-type": "application/json"},
            b"{}",
            "UNSUPPORTED_CONTENT_TYPE",
        ),
        ({**attributes_for(), "ce-time": "yesterday"}, b"", "INVALID_ATTRIBUTE"),
        (attributes_for(), b"\xff\xff\xff\xff", "UNDECODABLE_DATA"),
    ],
)
def test_decode_event_refuses_what_retrying_cannot_fix(
    attributes: dict[str, str], data: bytes, reason: str
) -> None:
    with pytest.raises(UndecodableEvent) as refused:
        decode_event(Received(data, attributes), ev.TransferPosted)
    assert refused.value.reason == reason


def test_the_registry_knows_every_contracts_events_by_full_name() -> None:
    assert "astra.ledger.v1.events_pb2" in import_contract_events()
    opened = ev.AccountOpened()
    opened.account.id = "acct_1"
    decoded = decode("astra.ledger.v1.AccountOpened", opened.SerializeToString())
    assert decoded == opened
    with pytest.raises(UndecodableEvent) as unknown:
        decode("astra.nowhere.v1.Mystery", b"")
    assert unknown.value.reason == "UNKNOWN_EVENT_TYPE"


def test_the_tail_renders_a_message_as_json_ready_fields() -> None:
    posted = ev.TransferPosted(transfer_id="tr_9", metadata={"invoice": "inv-1"})
    line = render(
        Received(
            posted.SerializeToString(),
            attributes_for("ev-9", subject="tr_9"),
            ordering_key="lane-09",
            publish_time=datetime(2026, 1, 2, tzinfo=UTC),
        )
    )
    assert line["type"] == "astra.ledger.v1.TransferPosted"
    assert line["id"] == "ev-9"
    assert line["ordering_key"] == "lane-09"
    assert line["subject"] == "tr_9"
    assert line["event"] == {"transfer_id": "tr_9", "metadata": {"invoice": "inv-1"}}
    assert line["publish_time"] == "2026-01-02T00:00:00+00:00"
    garbage = render(Received(b"\xff\xff", attributes_for("ev-10")))
    assert garbage["error"].startswith("UNDECODABLE_DATA")
    assert garbage["data_hex"] == "ffff"
