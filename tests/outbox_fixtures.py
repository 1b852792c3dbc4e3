"""Shared parts of the outbox, relay and subscriber tests: real PostgreSQL, the real emulator.

Every test gets its own topic and subscriptions on the session's emulator (or
its own emulator when it stops and restarts it), its own databases, and a
relay either in a thread of the test process or as a real ``astra-relay``
process (when it must be killed).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from astra.ledger.v1 import events_pb2 as ev
from astra_testkit.ports import free_port
from astra_testkit.postgres import PostgresServer
from astra_testkit.processes import ServiceProcess
from astra_testkit.pubsub_emulator import PubSubEmulator
from astra_testkit.tls import tls_env
from astra_testkit.waiting import wait_until
from chassis.db.engine import create_db_engine
from chassis.events.clients import (
    ensure_subscription,
    ensure_topic,
    publisher_api,
    subscriber_client,
    subscription_path,
    topic_path,
)
from chassis.events.decoding import ReceivedEvent
from chassis.events.relay import Relay
from chassis.events.relay_settings import RelaySettings
from chassis.events.schema import SubscriberTables, outbox_table
from chassis.events.subscriber import EventSubscriber, SubscriberOptions
from chassis.events.writer import OutboxMessage, OutboxWriter
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert

PROJECT = "astra-test"
RELAY_BIN = str(Path(sys.executable).with_name("astra-relay"))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def emulator_env(
    pubsub_emulator: PubSubEmulator, monkeypatch: pytest.MonkeyPatch
) -> PubSubEmulator:
    """The session's emulator, selected for the clients this test creates."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)
    return pubsub_emulator


@pytest.fixture
def own_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[PubSubEmulator]:
    """An emulator for this test alone: it keeps a thread per ordering key of an ordered
    subscription for good, and thousands of keys should not weigh on the session's."""
    with PubSubEmulator() as emulator:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
        yield emulator


@dataclass
class Topic:
    """A fresh topic with an ordered subscription for the test to read."""

    id: str
    path: str
    subscription: str

    @classmethod
    def create(cls) -> Topic:
        topic_id = unique("events")
        path = topic_path(PROJECT, topic_id)
        ensure_topic(publisher_api(), path)
        subscription = subscription_path(PROJECT, unique("sub"))
        client = subscriber_client()
        ensure_subscription(client, subscription, path, ordering=True)
        client.close()
        return cls(topic_id, path, subscription)

    def add_subscription(self) -> str:
        subscription = subscription_path(PROJECT, unique("sub"))
        client = subscriber_client()
        ensure_subscription(client, subscription, self.path, ordering=True)
        client.close()
        return subscription


@dataclass(frozen=True)
class Received:
    attributes: dict[str, str]
    data: bytes
    ordering_key: str
    message_id: str


@dataclass
class Collector:
    """Streams one subscription into a list (acking everything), for assertions."""

    subscription: str
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _future: Any = None
    _client: Any = None

    def start(self) -> Collector:
        self._client = subscriber_client()

        def on_message(message: Any) -> None:
            with self._lock:
                self.received.append(
                    Received(
                        dict(message.attributes),
                        bytes(message.data),
                        message.ordering_key,
                        message.message_id,
                    )
                )
            message.ack()

        self._future = self._client.subscribe(self.subscription, callback=on_message)
        return self

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def wait_for(self, count: int, timeout: float = 60.0) -> list[Received]:
        wait_until(lambda: len(self.snapshot()) >= count, timeout, f"{count} messages")
        return self.snapshot()

    def stop(self) -> None:
        if self._future is not None:
            self._future.cancel()
            with contextlib.suppress(Exception):
                self._future.result(timeout=10)
        if self._client is not None:
            self._client.close()


@contextlib.contextmanager
def collecting(subscription: str) -> Iterator[Collector]:
    collector = Collector(subscription).start()
    try:
        yield collector
    finally:
        collector.stop()


# --- writing outbox rows -----------------------------------------------------


def posted_event(transfer_id: str, sequence: int) -> OutboxMessage:
    """A TransferPosted outbox row whose metadata carries its place in its transfer's sequence."""
    occurred = datetime.now(UTC)
    message = ev.TransferPosted(transfer_id=transfer_id, metadata={"seq": str(sequence)})
    message.occur_time.FromDatetime(occurred)
    return OutboxMessage(
        event_type=message.DESCRIPTOR.full_name,
        aggregate_id=transfer_id,
        payload=message.SerializeToString(),
        occurred_at=occurred,
    )


class OutboxFeeder:
    """Writes outbox rows the way services do: in transactions, with NOTIFY at commit."""

    def __init__(self, database_url: str, context: str) -> None:
        self.engine = create_db_engine(database_url, pool_size=4)
        self.table = outbox_table(MetaData())
        self.writer = OutboxWriter(self.table, context)
        self._sequence: dict[str, int] = {}

    def write(self, keys: Sequence[str]) -> list[OutboxMessage]:
        """One transaction writing one event per key (keys may repeat), in order."""
        messages = []
        for key in keys:
            sequence = self._sequence.get(key, 0) + 1
            self._sequence[key] = sequence
            messages.append(posted_event(key, sequence))
        with self.engine.begin() as connection:
            self.writer.write(connection, messages)
        return messages

    def unpublished(self) -> int:
        with self.engine.connect() as connection:
            return int(
                connection.execute(
                    select(func.count()).where(self.table.c.published_at.is_(None))
                ).scalar_one()
            )

    def total(self) -> int:
        with self.engine.connect() as connection:
            statement = select(func.count()).select_from(self.table)
            return int(connection.execute(statement).scalar_one())

    def close(self) -> None:
        self.engine.dispose()


# --- relays --------------------------------------------------------------------


def relay_settings(database_url: str, topic_id: str, **overrides: Any) -> RelaySettings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "context": "ledger",
        "topic": topic_id,
        "poll_seconds": 0.5,
        "rebalance_seconds": 0.5,
        "backoff_max_seconds": 1.0,
        "lag_interval_seconds": 0.5,
        **overrides,
    }
    return RelaySettings(**values)


@contextlib.contextmanager
def running_relay(settings: RelaySettings, **kwargs: Any) -> Iterator[Relay]:
    """A relay in a thread of the test process, stopped (and its round finished) at exit."""
    relay = Relay.build(settings, project=PROJECT, **kwargs)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            relay.run()
        except BaseException as error:  # surfaced by the test below
            failure.append(error)

    thread = threading.Thread(target=run, name="test-relay", daemon=True)
    thread.start()
    try:
        relay.started.wait(30)
        yield relay
    finally:
        relay.stop()
        thread.join(30)
        assert not thread.is_alive(), "the relay did not stop"
    assert not failure, f"the relay crashed: {failure[0]!r}"


def relay_process(
    database_url: str, emulator_host: str, topic_id: str, name: str = "relay", **env: str
) -> ServiceProcess:
    """``astra-relay`` as a real process (so that kill -9 is real)."""
    health_port = free_port()
    process = ServiceProcess(
        name,
        [RELAY_BIN, "run"],
        {
            "RELAY_DATABASE_URL": database_url,
            "RELAY_CONTEXT": "ledger",
            "RELAY_TOPIC": topic_id,
            "RELAY_HEALTH_PORT": str(health_port),
            "RELAY_BACKOFF_MAX_SECONDS": "1",
            "RELAY_REBALANCE_SECONDS": "0.5",
            "RELAY_LAG_INTERVAL_SECONDS": "1",
            "ASTRA_PUBSUB_PROJECT": PROJECT,
            "PUBSUB_EMULATOR_HOST": emulator_host,
            **tls_env("RELAY", "relay"),
            **env,
        },
    )
    process.start()
    process.wait_healthy(f"127.0.0.1:{health_port}", timeout=60)
    return process


# --- a subscriber whose effect counts events -----------------------------------------


class CountingStore:
    """A subscriber's own database: per-transfer counters (the effect) and the inbox tables.

    Each applied event adds one to its transfer's counter in the handler's
    transaction, so a duplicate that slipped past the inbox would show as 2.
    """

    def __init__(self, postgres: PostgresServer) -> None:
        self._postgres = postgres
        name = postgres.create_database(prefix="astra_t_sub")
        self.url = postgres.url_for(name)
        metadata = MetaData()
        self.counters = Table(
            "counters",
            metadata,
            Column("key", String(200), primary_key=True),
            Column("applied", Integer, nullable=False),
            Column("last_seq", Integer, nullable=False),
            Column("out_of_order", Integer, nullable=False),
        )
        self.tables = SubscriberTables.define(metadata)
        self.engine: Engine = create_db_engine(self.url, pool_size=12)
        metadata.create_all(self.engine)

    def count_posted(self, event: ReceivedEvent[Any], connection: Connection) -> None:
        # Test feeds number each transfer's events (in real life a transfer has one).
        sequence = int(event.message.metadata.get("seq", "1"))
        statement = pg_insert(self.counters).values(
            key=event.message.transfer_id,
            applied=1,
            last_seq=sequence,
            out_of_order=0 if sequence == 1 else 1,
        )
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=[self.counters.c.key],
                set_={
                    "applied": self.counters.c.applied + 1,
                    "last_seq": statement.excluded.last_seq,
                    # Events of one transfer must come in sequence: 1, 2, 3...
                    "out_of_order": self.counters.c.out_of_order
                    + text("CASE WHEN excluded.last_seq = counters.last_seq + 1 THEN 0 ELSE 1 END"),
                },
            )
        )

    def subscriber(
        self, subscription: str, options: SubscriberOptions | None = None, **kwargs: Any
    ) -> EventSubscriber:
        return EventSubscriber(
            subscription=subscription,
            engine=self.engine,
            tables=self.tables,
            handlers={ev.TransferPosted: self.count_posted},
            options=options,
            **kwargs,
        )

    def counts(self) -> dict[str, tuple[int, int, int]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(
                    self.counters.c.key,
                    self.counters.c.applied,
                    self.counters.c.last_seq,
                    self.counters.c.out_of_order,
                )
            )
            return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def applied_total(self) -> int:
        with self.engine.connect() as connection:
            value = connection.execute(select(func.sum(self.counters.c.applied))).scalar()
            return int(value or 0)

    def dead_letters(self) -> list[dict[str, Any]]:
        table = self.tables.dead_letters
        with self.engine.connect() as connection:
            return [dict(r._mapping) for r in connection.execute(select(table))]

    def close(self) -> None:
        self.engine.dispose()
        self._postgres.drop_url(self.url)


@pytest.fixture
def counting_store(postgres: PostgresServer) -> Iterator[CountingStore]:
    store = CountingStore(postgres)
    yield store
    store.close()
