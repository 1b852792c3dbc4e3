"""How the relay groups outbox rows into publish requests and messages, without I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from chassis.events.outbox_store import OutboxRow
from chassis.events.publishing import pack_requests, to_pubsub_message
from chassis.events.schema import OUTBOX_LANES, lane_of

AT = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def row(row_id: int, lane: int, payload: bytes = b"x", headers: str | None = None) -> OutboxRow:
    return OutboxRow(
        id=row_id,
        event_id=f"ev-{row_id}",
        event_type="astra.ledger.v1.TransferPosted",
        aggregate_id=f"tr_{row_id}",
        lane=lane,
        payload=payload,
        headers=headers,
        occurred_at=AT,
    )


def lanes_of(request: list[OutboxRow]) -> list[int]:
    return sorted({r.lane for r in request})


def test_each_lane_goes_whole_into_one_request_in_id_order() -> None:
    rows = [row(i, lane=i % 5) for i in range(1, 51)]  # 5 lanes of 10 rows, interleaved
    requests, cut = pack_requests(list(reversed(rows)), max_messages=25)
    assert not cut
    assert sum(len(r) for r in requests) == 50
    seen: set[int] = set()
    for request in requests:
        assert len(request) <= 25
        for lane in lanes_of(request):
            assert lane not in seen, "a lane spans two concurrent requests"
            seen.add(lane)
            ids = [r.id for r in request if r.lane == lane]
            assert ids == sorted(ids)
            assert len(ids) == 10


def test_a_lane_longer_than_a_request_is_cut_to_a_prefix() -> None:
    rows = [row(i, lane=7) for i in range(1, 31)]
    requests, cut = pack_requests(rows, max_messages=12)
    assert cut
    assert [[r.id for r in request] for request in requests] == [list(range(1, 13))]


def test_a_request_stays_under_the_byte_limit() -> None:
    rows = [row(i, lane=i % 3, payload=b"p" * 1000) for i in range(1, 31)]
    requests, cut = pack_requests(rows, max_messages=1000, max_bytes=5000)
    assert cut
    assert all(sum(r.approximate_size() for r in request) <= 5000 for request in requests)
    for request in requests:
        for lane in lanes_of(request):
            ids = [r.id for r in request if r.lane == lane]
            assert ids == sorted(ids)
            first_of_lane = min(r.id for r in rows if r.lane == lane)
            assert ids[0] == first_of_lane, "a lane must start from its oldest row"


def test_a_row_becomes_a_cloudevent_message_with_its_lanes_ordering_key() -> None:
    message: Any = to_pubsub_message(
        row(42, lane=3, payload=b"\x01\x02", headers=json.dumps({"traceparent": "00-a-b-01"})),
        "//astra.ledger",
    )
    assert message.data == b"\x01\x02"
    assert message.ordering_key == "lane-03"
    assert dict(message.attributes) == {
        "ce-id": "ev-42",
        "ce-subject": "tr_42",
        "ce-type": "astra.ledger.v1.TransferPosted",
        "ce-source": "//astra.ledger",
        "ce-specversion": "1.0",
        "ce-time": "2026-03-04T05:06:07.000000Z",
        "content-type": "application/protobuf",
        "traceparent": "00-a-b-01",
    }


def test_one_aggregate_always_falls_in_one_lane() -> None:
    lanes = {lane_of("tr_123") for _ in range(3)}
    assert len(lanes) == 1
    assert 0 <= lanes.pop() < OUTBOX_LANES
    spread = {lane_of(f"tr_{i}") for i in range(2000)}
    assert len(spread) == OUTBOX_LANES
