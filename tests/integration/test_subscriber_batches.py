"""Events that arrive together are applied in one transaction, without losing per-event rules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from astra.ledger.v1 import events_pb2 as ev
from chassis.db.engine import create_db_engine
from chassis.events import cloudevents as ce
from chassis.events.decoding import ReceivedEvent
from chassis.events.schema import SubscriberTables
from chassis.events.subscriber import EventSubscriber, Outcome, SubscriberOptions
from sqlalchemy import Column, Connection, MetaData, String, Table, select

from tests.outbox_fixtures import CountingStore


@dataclass
class Envelope:
    """A received message as the client library hands it over: data, attributes, ack/nack."""

    data: bytes
    attributes: Mapping[str, str]
    message_id: str
    ordering_key: str
    delivery_attempt: int | None = None
    acked: list[str] = field(default_factory=list)

    def ack(self) -> None:
        self.acked.append("ack")

    def nack(self) -> None:
        self.acked.append("nack")


def envelope(event_id: str, key: str, seq: int = 1) -> Envelope:
    payload = ev.TransferPosted(transfer_id=key, metadata={"seq": str(seq)})
    return Envelope(
        data=payload.SerializeToString(),
        attributes={
            ce.ID: event_id,
            ce.TYPE: "astra.ledger.v1.TransferPosted",
            ce.SOURCE: "//astra.ledger",
            ce.SPECVERSION: "1.0",
            ce.TIME: datetime.now(UTC).isoformat(),
            ce.CONTENT_TYPE: ce.CONTENT_TYPE_PROTOBUF,
        },
        message_id=f"m-{event_id}",
        ordering_key=key,
    )


def subscriber(store: CountingStore, poison: str = "") -> EventSubscriber:
    def handler(event: ReceivedEvent[Any], connection: Connection) -> None:
        if event.ordering_key == poison:
            raise RuntimeError("this event cannot be applied")
        store.count_posted(event, connection)

    return EventSubscriber(
        subscription="projects/p/subscriptions/batch-test",
        engine=store.engine,
        tables=store.tables,
        handlers={ev.TransferPosted: handler},
        options=SubscriberOptions(max_attempts=3),
    )


@pytest.mark.integration
def test_a_batch_is_applied_once_and_acked_after_commit(counting_store: CountingStore) -> None:
    sub = subscriber(counting_store)
    batch = [envelope(f"e{i}", f"tr_{i}") for i in range(10)]
    outcomes = sub.handle_batch([*batch, envelope("e3", "tr_3")])
    assert outcomes.count(Outcome.APPLIED) == 10
    assert outcomes.count(Outcome.DUPLICATE) == 1
    assert all(m.acked == ["ack"] for m in batch)
    assert counting_store.applied_total() == 10
    again = sub.handle_batch([envelope(f"e{i}", f"tr_{i}") for i in range(10)])
    assert again == [Outcome.DUPLICATE] * 10
    assert counting_store.applied_total() == 10


@pytest.mark.integration
def test_a_failing_handler_does_not_take_its_batch_down(counting_store: CountingStore) -> None:
    sub = subscriber(counting_store, poison="tr_bad")
    good = [envelope(f"g{i}", f"tr_{i}") for i in range(5)]
    bad = envelope("b1", "tr_bad")
    outcomes = sub.handle_batch([*good[:2], bad, *good[2:]])
    # The batch rolled back and went one by one: the good ones applied, the bad one retried.
    assert sorted(o.name for o in outcomes) == ["APPLIED"] * 5 + ["RETRY"]
    assert bad.acked == ["nack"]
    assert all(m.acked == ["ack"] for m in good)
    assert counting_store.applied_total() == 5
    failures = counting_store.tables.failures
    with counting_store.engine.connect() as connection:
        attempts = connection.execute(
            select(failures.c.attempts).where(failures.c.event_id == "b1")
        ).scalar_one()
    assert attempts == 1
    # Until its attempts run out it is dead-lettered, and the stream moves on.
    sub.handle_batch([envelope("b1", "tr_bad"), envelope("g9", "tr_9")])
    last = sub.handle_batch([envelope("b1", "tr_bad"), envelope("g10", "tr_10")])
    assert Outcome.DEAD_LETTERED in last
    assert [d["event_id"] for d in counting_store.dead_letters()] == ["b1"]
    assert counting_store.applied_total() == 7


def test_on_sqlite_a_batch_is_applied_once_too(tmp_path: Path) -> None:
    """`make run`'s embedded database takes the portable inbox insert, not PostgreSQL's."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'subscriber.db'}")
    metadata = MetaData()
    effects = Table("effects", metadata, Column("event_id", String(64), nullable=False))
    tables = SubscriberTables.define(metadata)
    metadata.create_all(engine)

    def handler(event: ReceivedEvent[Any], connection: Connection) -> None:
        connection.execute(effects.insert().values(event_id=event.id))

    sub = EventSubscriber(
        subscription="projects/p/subscriptions/sqlite-batch",
        engine=engine,
        tables=tables,
        handlers={ev.TransferPosted: handler},
    )
    try:
        fresh = [envelope(f"s{i}", f"tr_{i}") for i in range(4)]
        outcomes = sub.handle_batch([*fresh, envelope("s1", "tr_1")])
        again = sub.handle_batch([envelope("s2", "tr_2"), envelope("s9", "tr_9")])
        with engine.connect() as connection:
            applied = sorted(connection.execute(select(effects.c.event_id)).scalars())
    finally:
        engine.dispose()
    assert outcomes == [Outcome.APPLIED] * 4 + [Outcome.DUPLICATE]
    assert again == [Outcome.DUPLICATE, Outcome.APPLIED]
    assert applied == ["s0", "s1", "s2", "s3", "s9"]
