"""The outbox relay through the Pub/Sub emulator: throughput, and commit-to-subscriber latency.

Both run on a fresh ledger database (its outbox table) and the emulator.
- Relay throughput: a backlog of outbox rows written beforehand, drained by one
  relay (in this process, default settings); events/s from its start until the
  last row was acknowledged by Pub/Sub and marked.
- Latency: a writer commits 10 events per transaction, 100 transactions per
  second (1,000 events/s): 5 s of cold start, then the measured steady phase.
  ``astra-relay`` runs as its own process, and so does a subscriber built on
  the chassis helper (streaming pull, ordered subscription, inbox insert in
  PostgreSQL) that notes when each event reaches its handler. Latency is from
  the writer's commit returning to that moment (wall clock, one machine).

Run alone: ``python -m bench.outbox_bench``.

Knobs for experiments (bench only): BENCH_OUTBOX_SECONDS (steady phase length),
BENCH_SUBSCRIBER_WORKERS and BENCH_SUBSCRIBER_BATCH (the subscriber's options),
BENCH_OUTBOX_DUMP (a file to write each event's commit instant and latency to).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from astra.ledger.v1 import events_pb2 as ev
from astra_testkit.ports import free_port
from astra_testkit.processes import ServiceProcess
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
from chassis.events.outbox_store import OutboxRow
from chassis.events.publishing import to_pubsub_message
from chassis.events.relay import Relay
from chassis.events.relay_settings import RelaySettings
from chassis.events.schema import OUTBOX_LANES, SubscriberTables, lane_of, outbox_table
from chassis.events.subscriber import EventSubscriber, SubscriberOptions
from chassis.events.writer import OutboxMessage, OutboxWriter
from ledger.bootstrap import migrate
from sqlalchemy import Connection, Engine, MetaData, func, select, text

from bench.common import BenchEnv, Section, percentile, print_figures

PROJECT = "astra-bench"
BACKLOG = 50_000
RATE_PER_S = 1000
PER_COMMIT = 10
STEADY_SECONDS = float(os.environ.get("BENCH_OUTBOX_SECONDS", "20"))
# The load runs this long before the measured steady phase. The first seconds on a
# fresh topic are a cold start (the emulator starts a thread for each ordering key
# it meets, our processes' first statements are prepared): measured separately.
WARMUP_SECONDS = 5.0
# Aggregates the steady load spreads over (published under at most OUTBOX_LANES keys).
LATENCY_KEYS = 500


def _event(key: str) -> OutboxMessage:
    occurred = datetime.now(UTC)
    # The size of a real two-leg TransferPosted: legs, balances and a metadata entry.
    message = ev.TransferPosted(transfer_id=key, metadata={"invoice": "inv-0001"})
    for account in ("acct_bench_src", "acct_bench_dst"):
        message.legs.add(account_id=account, direction=1, amount=1250, currency="EUR")
        message.balances.add(account_id=account, currency="EUR", posted=1250, available=1250)
    message.occur_time.FromDatetime(occurred)
    return OutboxMessage(
        event_type=message.DESCRIPTOR.full_name,
        aggregate_id=key,
        payload=message.SerializeToString(),
        occurred_at=occurred,
    )


def _topic(name: str, *, ordering: bool) -> tuple[str, str]:
    """A fresh topic with one subscription; its id and the subscription path."""
    topic_id = f"{name}-{uuid.uuid4().hex[:8]}"
    path = topic_path(PROJECT, topic_id)
    ensure_topic(publisher_api(), path)
    subscription = subscription_path(PROJECT, f"{topic_id}-sub")
    client = subscriber_client()
    ensure_subscription(client, subscription, path, ordering=ordering)
    client.close()
    return topic_id, subscription


def _unpublished(engine: Engine) -> int:
    table = outbox_table(MetaData())
    with engine.connect() as connection:
        statement = select(func.count()).where(table.c.published_at.is_(None))
        return int(connection.execute(statement).scalar_one())


def relay_throughput(env: BenchEnv, section: Section) -> None:
    url = env.postgres.fresh_database_url("bench_ledger", migrate)
    engine = create_db_engine(url, pool_size=2)
    writer = OutboxWriter(outbox_table(MetaData()), "ledger")
    try:
        for start in range(0, BACKLOG, 5000):
            with engine.begin() as connection:
                writer.write(connection, [_event(f"tr_b{i}") for i in range(start, start + 5000)])
        # Nobody reads this topic's messages: the relay publishes the same either way.
        topic_id, _subscription = _topic("relay-throughput", ordering=False)
        settings = RelaySettings(database_url=url, context="ledger", topic=topic_id)
        relay = Relay.build(settings, project=PROJECT)
        thread = threading.Thread(target=relay.run, name="bench-relay", daemon=True)
        started = time.perf_counter()
        thread.start()
        while relay.published_total < BACKLOG:
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
        relay.stop()
        thread.join(30)
        assert _unpublished(engine) == 0, "the relay stopped before marking every row"
    finally:
        engine.dispose()
        env.postgres.drop_url(url)
    rate = BACKLOG / elapsed
    env.figures["outbox.relay_events_per_s"] = rate
    section.add(
        "relay throughput (backlog of 50,000)",
        round(rate),
        "events/s",
        ">= 5000",
        note=f"{relay.rounds} rounds, up to 1,000 messages per publish request, "
        f"{settings.publish_concurrency} in flight",
    )


class _ArrivalLog:
    """The subscriber's handler: notes the wall-clock time each event reaches it."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self._lock = threading.Lock()

    def handle(self, event: ReceivedEvent[Any], connection: Connection) -> None:
        now = time.time()
        with self._lock:
            self.arrived.setdefault(event.id, now)

    def count(self) -> int:
        with self._lock:
            return len(self.arrived)


def _subscriber_process(
    subscription: str,
    database_url: str,
    emulator_host: str,
    ready: Any,
    stop: Any,
    results: Any,
) -> None:
    """A subscriber in its own process, as in production: it shares no interpreter lock."""
    os.environ["PUBSUB_EMULATOR_HOST"] = emulator_host
    engine = create_db_engine(database_url, pool_size=10)
    metadata = MetaData()
    tables = SubscriberTables.define(metadata)
    metadata.create_all(engine)
    log = _ArrivalLog()
    subscriber = EventSubscriber(
        subscription=subscription,
        engine=engine,
        tables=tables,
        handlers={ev.TransferPosted: log.handle},
        options=SubscriberOptions(
            workers=int(os.environ.get("BENCH_SUBSCRIBER_WORKERS", "8")),
            batch_size=int(os.environ.get("BENCH_SUBSCRIBER_BATCH", "100")),
        ),
    )
    subscriber.start()
    ready.set()
    stop.wait(WARMUP_SECONDS + STEADY_SECONDS + 120)
    subscriber.stop()
    engine.dispose()
    results.put(dict(log.arrived))


def _relay_lag_ms(engine: Engine) -> tuple[float, float]:
    """The relay's share: from the writing transaction's start to the row's mark, p50 and p99."""
    with engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), "
                "percentile_cont(0.99) WITHIN GROUP (ORDER BY lag) FROM (SELECT "
                "EXTRACT(EPOCH FROM published_at - created_at) * 1000 AS lag FROM outbox "
                "WHERE published_at IS NOT NULL) AS lags"
            )
        ).one()
    return float(row[0]), float(row[1])


def steady_latency(env: BenchEnv, section: Section) -> None:
    url = env.postgres.fresh_database_url("bench_ledger", migrate)
    subscriber_db = env.postgres.url_for(env.postgres.create_database(prefix="astra_bench_sub"))
    engine = create_db_engine(url, pool_size=2)
    writer = OutboxWriter(outbox_table(MetaData()), "ledger")
    topic_id, subscription = _topic("relay-latency", ordering=True)
    spawn = multiprocessing.get_context("spawn")
    ready, stop, results = spawn.Event(), spawn.Event(), spawn.Queue()
    consumer = spawn.Process(
        target=_subscriber_process,
        args=(subscription, subscriber_db, env.emulator().host, ready, stop, results),
        name="bench-subscriber",
    )
    health_port = free_port()
    relay = ServiceProcess(
        "relay-bench",
        [str(Path(sys.executable).with_name("astra-relay")), "run"],
        {
            "RELAY_DATABASE_URL": url,
            "RELAY_CONTEXT": "ledger",
            "RELAY_TOPIC": topic_id,
            "RELAY_HEALTH_PORT": str(health_port),
            "RELAY_LOG_LEVEL": "WARNING",
            "ASTRA_PUBSUB_PROJECT": PROJECT,
        },
    ).start()
    committed: dict[str, float] = {}
    arrived: dict[str, float] = {}
    sent = 0
    try:
        relay.wait_healthy(f"127.0.0.1:{health_port}")
        consumer.start()
        if not ready.wait(120):
            raise RuntimeError("the bench subscriber did not start")
        interval = PER_COMMIT / RATE_PER_S
        started = time.perf_counter()
        next_commit = started
        while next_commit - started < WARMUP_SECONDS + STEADY_SECONDS:
            delay = next_commit - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            batch = [_event(f"agg_{(sent + i) % LATENCY_KEYS}") for i in range(PER_COMMIT)]
            with engine.begin() as connection:
                writer.write(connection, batch)
            now = time.time()
            for message in batch:
                committed[message.event_id] = now
            sent += PER_COMMIT
            next_commit += interval
        writing = time.perf_counter() - started
        warmup_end = time.time() - writing + WARMUP_SECONDS
        # Let the tail arrive, then collect the subscriber's log.
        deadline = time.monotonic() + 60
        while _unpublished(engine) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2.0)
        stop.set()
        arrived = results.get(timeout=120)
        relay_p50, relay_p99 = _relay_lag_ms(engine)
    finally:
        stop.set()
        if consumer.pid is not None:
            consumer.join(60)
            if consumer.is_alive():
                consumer.kill()
        relay.terminate()
        engine.dispose()
        env.postgres.drop_url(url)
        env.postgres.drop_url(subscriber_db)
    samples = [
        (arrived[event_id] - at) * 1000
        for event_id, at in committed.items()
        if at >= warmup_end and event_id in arrived
    ]
    cold = [
        (arrived[event_id] - at) * 1000
        for event_id, at in committed.items()
        if at < warmup_end and event_id in arrived
    ]
    dump = os.environ.get("BENCH_OUTBOX_DUMP")
    if dump:  # for experiments: commit instant (s since start) and latency, per event
        with open(dump, "w") as out:
            for event_id, at in sorted(committed.items(), key=lambda item: item[1]):
                if event_id in arrived:
                    latency = (arrived[event_id] - at) * 1000
                    out.write(f"{at - warmup_end + WARMUP_SECONDS:.3f} {latency:.1f}\n")
    section.add("events written (steady load)", round(sent / writing), "events/s", ">= 950")
    section.add("events that reached the subscriber", len(arrived), "events", f">= {sent}")
    p50 = percentile(samples, 50)
    p99 = percentile(samples, 99)
    env.figures["outbox.latency_p99_ms"] = p99
    section.add("commit-to-subscriber latency p50", round(p50, 1), "ms")
    section.add("commit-to-subscriber latency p99", round(p99, 1), "ms", "<= 100")
    section.add("commit-to-subscriber latency max", round(max(samples), 1), "ms")
    section.add(
        "cold start (first 5 s, not counted above) p99",
        round(percentile(cold, 99), 1),
        "ms",
        note=f"p50 {percentile(cold, 50):.1f} ms, max {max(cold):.1f} ms",
    )
    section.add(
        "of which commit to Pub/Sub ack, p50",
        round(relay_p50, 1),
        "ms",
        note=f"p99 {relay_p99:.1f} ms (outbox created_at to published_at, database clock)",
    )
    section.latencies_ms["commit to subscriber (1,000 events/s)"] = samples


def _row(message: OutboxMessage) -> OutboxRow:
    return OutboxRow(
        id=0,
        event_id=message.event_id,
        event_type=message.event_type,
        aggregate_id=message.aggregate_id,
        lane=lane_of(message.aggregate_id),
        payload=message.payload,
        headers=None,
        occurred_at=message.occurred_at,
    )


def emulator_floor(env: BenchEnv, section: Section) -> None:
    """The same load published straight to the emulator and received by a bare callback.

    No database, relay or inbox: what the emulator and the client library alone
    take on this machine, to read the full pipeline's latency against.
    """
    topic_id, subscription = _topic("emulator-floor", ordering=True)
    topic = topic_path(PROJECT, topic_id)
    publisher = publisher_api()
    client = subscriber_client()
    sent_at: dict[str, float] = {}
    arrived: dict[str, float] = {}
    lock = threading.Lock()

    def on_message(message: Any) -> None:
        now = time.time()
        with lock:
            arrived.setdefault(message.attributes["ce-id"], now)
        message.ack()

    future = client.subscribe(subscription, callback=on_message)
    sent = 0
    seconds = WARMUP_SECONDS + min(STEADY_SECONDS, 10.0)
    try:
        interval = PER_COMMIT / RATE_PER_S
        started = time.perf_counter()
        next_send = started
        while next_send - started < seconds:
            delay = next_send - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            rows = [_event(f"agg_{(sent + i) % LATENCY_KEYS}") for i in range(PER_COMMIT)]
            messages = [to_pubsub_message(_row(m), "//astra.bench") for m in rows]
            publisher.publish(request={"topic": topic, "messages": messages})
            now = time.time()
            for m in rows:
                sent_at[m.event_id] = now
            sent += PER_COMMIT
            next_send += interval
        warmup_end = time.time() - seconds + WARMUP_SECONDS
        deadline = time.monotonic() + 30
        while len(arrived) < sent and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        future.cancel()
        with contextlib.suppress(Exception):
            future.result(timeout=10)
        client.close()
    samples = [
        (arrived[event_id] - at) * 1000
        for event_id, at in sent_at.items()
        if at >= warmup_end and event_id in arrived
    ]
    section.add(
        "emulator alone (publish to bare callback) p50",
        round(percentile(samples, 50), 1),
        "ms",
        note=f"p99 {percentile(samples, 99):.1f} ms; same rate and keys, ordered subscription",
    )


def measure(env: BenchEnv) -> Section:
    section = Section("Outbox relay and Pub/Sub (emulator)")
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = env.emulator().host
    try:
        relay_throughput(env, section)
        # The backlog just written and marked is not the latency phase's to flush.
        section.notes.append(f"PostgreSQL settled before the latency phase: {env.settle()}")
        steady_latency(env, section)
        emulator_floor(env, section)
    finally:
        if previous is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = previous
    section.notes.append(
        "Latency: 10 events per commit, 100 commits/s: a 5 s cold start on the fresh topic "
        "(reported apart), then 20 s measured; "
        "relay as its own process woken by NOTIFY; subscriber = chassis EventSubscriber "
        "(ordered streaming pull, inbox insert in PostgreSQL) noting arrival in its handler. "
        f"Events spread over {LATENCY_KEYS} aggregates, published under at most "
        f"{OUTBOX_LANES} ordering keys (one per outbox lane): the emulator (0.8.20) starts a "
        "thread per ordering key of an ordered subscription and never frees it. "
        "The emulator delivers to a streaming pull in rounds: its pusher thread sleeps 50 ms "
        "after every round (FakePubsubServer$StreamingPullPusher.run in the 0.8.20 jar), so "
        "0 to 50 ms of every event's latency is the emulator's polling; Pub/Sub itself pushes."
    )
    return section


def main() -> None:
    from astra_testkit.postgres import PostgresServer

    env = BenchEnv(postgres=PostgresServer())
    env.postgres.require()
    try:
        section = measure(env)
    finally:
        env.close()
    print(f"## {section.title}")
    print_figures(section)


if __name__ == "__main__":
    main()
