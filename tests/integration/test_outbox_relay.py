"""The relay on real PostgreSQL (the ledger's migrated schema) and the real Pub/Sub emulator."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from astra.ledger.v1 import events_pb2 as ev
from astra_testkit.pubsub_emulator import PubSubEmulator
from astra_testkit.waiting import wait_until
from chassis.events import cloudevents as ce
from chassis.events.clients import (
    ensure_subscription,
    subscriber_client,
    subscription_path,
    topic_path,
)
from chassis.events.outbox_store import OutboxLag
from chassis.events.relay import Relay
from chassis.events.schema import OUTBOX_LANES, lane_of, ordering_key_of_lane
from ledger.bootstrap import migrate
from sqlalchemy import text

from tests.outbox_fixtures import (
    PROJECT,
    OutboxFeeder,
    Received,
    Topic,
    collecting,
    posted_event,
    relay_settings,
    running_relay,
    unique,
)

pytestmark = pytest.mark.integration

# Long enough that only a NOTIFY can explain a prompt publish.
NO_POLL = 3600.0


@pytest.fixture
def feeder(ledger_db_url: str) -> Iterator[OutboxFeeder]:
    feeder = OutboxFeeder(ledger_db_url, "ledger")
    yield feeder
    feeder.close()


def seqs_by_transfer(received: list[Received]) -> dict[str, list[int]]:
    """Each transfer's sequence numbers in the order they arrived (``ce-subject`` names it)."""
    seen: dict[str, list[int]] = defaultdict(list)
    for message in received:
        event = ev.TransferPosted.FromString(message.data)
        assert message.attributes[ce.SUBJECT] == event.transfer_id
        assert message.ordering_key == ordering_key_of_lane(lane_of(event.transfer_id))
        seen[event.transfer_id].append(int(event.metadata["seq"]))
    return dict(seen)


def test_publishes_each_row_as_a_cloudevent_and_marks_it_published(
    emulator_env: object, ledger_db_url: str, feeder: OutboxFeeder
) -> None:
    topic = Topic.create()
    traced = posted_event("tr_traced", 1)
    traced = type(traced)(
        event_type=traced.event_type,
        aggregate_id=traced.aggregate_id,
        payload=traced.payload,
        occurred_at=traced.occurred_at,
        headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    )
    written = feeder.write(["tr_one", "tr_two"])
    with feeder.engine.begin() as connection:
        feeder.writer.write(connection, [traced])
    written.append(traced)
    with (
        collecting(topic.subscription) as collector,
        running_relay(relay_settings(ledger_db_url, topic.id, poll_seconds=NO_POLL)),
    ):
        received = collector.wait_for(3)
        wait_until(lambda: feeder.unpublished() == 0, 30, "rows marked published")

    by_id = {m.attributes[ce.ID]: m for m in received}
    assert set(by_id) == {w.event_id for w in written}
    for row in written:
        message = by_id[row.event_id]
        assert message.ordering_key == ordering_key_of_lane(lane_of(row.aggregate_id))
        assert message.attributes[ce.SUBJECT] == row.aggregate_id
        assert message.data == row.payload
        assert message.attributes[ce.TYPE] == "astra.ledger.v1.TransferPosted"
        assert message.attributes[ce.SOURCE] == "//astra.ledger"
        assert message.attributes[ce.SPECVERSION] == "1.0"
        assert message.attributes[ce.CONTENT_TYPE] == "application/protobuf"
        assert message.attributes[ce.TIME] == ce.format_time(row.occurred_at)
        decoded = ev.TransferPosted.FromString(message.data)
        assert decoded.transfer_id == row.aggregate_id
    assert by_id[traced.event_id].attributes["traceparent"].startswith("00-0af7651916cd43dd")
    assert feeder.total() == 3


def test_rows_of_a_transaction_that_commits_late_are_not_skipped(
    emulator_env: object, ledger_db_url: str, feeder: OutboxFeeder
) -> None:
    topic = Topic.create()
    late = posted_event("tr_late", 1)
    with (
        collecting(topic.subscription) as collector,
        running_relay(relay_settings(ledger_db_url, topic.id, poll_seconds=NO_POLL)),
        feeder.engine.connect() as slow,
    ):
        # The slow transaction takes the lower id, then commits after a faster one.
        slow.begin()
        feeder.writer.write(slow, [late])
        fast = feeder.write(["tr_fast"])
        first = collector.wait_for(1)
        assert [m.attributes[ce.ID] for m in first] == [fast[0].event_id]
        slow.commit()
        received = collector.wait_for(2)
    assert {m.attributes[ce.ID] for m in received} == {late.event_id, fast[0].event_id}
    with feeder.engine.connect() as connection:
        ids: dict[str, int] = dict(
            connection.execute(text("SELECT event_id, id FROM outbox")).fetchall()
        )
    assert ids[late.event_id] < ids[fast[0].event_id]
    assert feeder.unpublished() == 0


def test_two_relays_split_the_lanes_and_keep_each_aggregates_order(
    emulator_env: object, ledger_db_url: str, feeder: OutboxFeeder
) -> None:
    topic = Topic.create()
    keys = [f"tr_agg_{i}" for i in range(16)]
    per_key = 60
    settings = relay_settings(ledger_db_url, topic.id, batch_size=50, max_rows_per_round=200)
    with (
        collecting(topic.subscription) as collector,
        running_relay(settings) as first,
        running_relay(settings) as second,
    ):
        wait_until(
            lambda: (
                len(first.owned_lanes) + len(second.owned_lanes) == OUTBOX_LANES
                and not first.owned_lanes & second.owned_lanes
                and len(first.owned_lanes) == OUTBOX_LANES // 2
            ),
            30,
            "the lanes split between the two relays",
        )
        # Many small transactions, each touching several aggregates in turn.
        for round_ in range(per_key):
            feeder.write(keys[round_ % 4 :] + keys[: round_ % 4])
        received = collector.wait_for(len(keys) * per_key, timeout=120)
        wait_until(lambda: feeder.unpublished() == 0, 30, "every row marked published")
        published = (first.published_total, second.published_total)

    assert seqs_by_transfer(received) == {key: list(range(1, per_key + 1)) for key in keys}
    assert sum(published) == len(keys) * per_key
    lanes_used = {lane_of(k) for k in keys}
    assert len(lanes_used) > 1
    assert all(n > 0 for n in published), f"one relay published nothing: {published}"


def test_measures_backlog_and_age_of_the_oldest_unpublished_row(
    emulator_env: object, ledger_db_url: str, feeder: OutboxFeeder
) -> None:
    topic = Topic.create()
    feeder.write([f"tr_lag_{i}" for i in range(10)])
    with feeder.engine.begin() as connection:
        connection.execute(
            text("UPDATE outbox SET created_at = created_at - interval '30 seconds'")
        )
    idle = Relay.build(relay_settings(ledger_db_url, topic.id), project=PROJECT)
    lag = idle.measure_lag()
    assert lag.backlog == 10
    assert 30 <= lag.oldest_age_seconds < 3600

    reported: list[OutboxLag] = []
    with running_relay(relay_settings(ledger_db_url, topic.id), on_lag=reported.append) as relay:
        wait_until(lambda: feeder.unpublished() == 0, 30, "the backlog drained")
        wait_until(lambda: relay.lag is not None and relay.lag.backlog == 0, 30, "lag measured")
    assert reported
    assert reported[-1].backlog == 0
    assert reported[-1].oldest_age_seconds == 0.0


def test_purges_published_rows_after_the_retention_period(
    emulator_env: object, ledger_db_url: str, feeder: OutboxFeeder
) -> None:
    topic = Topic.create()
    feeder.write([f"tr_purge_{i}" for i in range(20)])
    settings = relay_settings(ledger_db_url, topic.id, retention_seconds=0)
    with running_relay(settings) as relay:
        wait_until(lambda: feeder.unpublished() == 0, 30, "rows published")
    # Written after the relay stopped: unpublished, so never purged.
    feeder.write(["tr_keep"])
    assert relay.purge() == 20
    assert feeder.total() == 1
    assert feeder.unpublished() == 1


def test_creates_its_topic_when_missing(
    emulator_env: object, ledger_db_url: str, feeder: OutboxFeeder
) -> None:
    topic_id = unique("created-by-relay")
    path = topic_path(PROJECT, topic_id)
    with running_relay(relay_settings(ledger_db_url, topic_id)):
        client = subscriber_client()
        subscription = subscription_path(PROJECT, unique("sub"))

        def subscribed() -> bool:
            try:
                ensure_subscription(client, subscription, path)
            except Exception:  # NotFound until the relay created the topic
                return False
            return True

        wait_until(subscribed, 30, "the relay to create its topic")
        client.close()
        with collecting(subscription) as collector:
            written = feeder.write(["tr_after_create"])
            received = collector.wait_for(1)
    assert received[0].attributes[ce.ID] == written[0].event_id


def test_on_sqlite_one_relay_owns_every_lane_and_another_waits(
    emulator_env: object, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    migrate(url)
    topic = Topic.create()
    feeder = OutboxFeeder(url, "ledger")
    try:
        written = feeder.write(["tr_sqlite_a", "tr_sqlite_b", "tr_sqlite_a"])
        settings = relay_settings(url, topic.id, poll_seconds=0.1)
        with (
            collecting(topic.subscription) as collector,
            running_relay(settings) as active,
        ):
            wait_until(lambda: len(active.owned_lanes) == OUTBOX_LANES, 30, "all lanes owned")
            with running_relay(settings) as standby:
                received = collector.wait_for(3)
                assert standby.owned_lanes == frozenset()
            wait_until(lambda: feeder.unpublished() == 0, 30, "rows marked published")
    finally:
        feeder.close()
    assert [m.attributes[ce.ID] for m in received if m.attributes[ce.SUBJECT] == "tr_sqlite_a"] == [
        written[0].event_id,
        written[2].event_id,
    ]
    assert json.loads(json.dumps(received[0].attributes))[ce.SOURCE] == "//astra.ledger"


def test_many_aggregates_share_a_bounded_set_of_ordering_keys_each_in_order(
    emulator_env: PubSubEmulator, ledger_db_url: str, feeder: OutboxFeeder
) -> None:
    # One ordering key per transfer took the emulator to ~14,000 threads under load:
    # it keeps a thread per key of an ordered subscription for good.
    topic = Topic.create()
    transfers = [f"tr_many_{i}" for i in range(2000)]
    threads_before = emulator_env.thread_count()
    with collecting(topic.subscription) as collector:
        for start in range(0, len(transfers), 500):
            feeder.write(transfers[start : start + 500])
        feeder.write(list(reversed(transfers)))  # each transfer's second event
        with running_relay(relay_settings(ledger_db_url, topic.id)):
            received = collector.wait_for(2 * len(transfers), timeout=120)
    keys = {m.ordering_key for m in received}
    added_threads = emulator_env.thread_count() - threads_before

    assert len(received) == 2 * len(transfers)
    assert len(keys) <= OUTBOX_LANES, f"{len(keys)} ordering keys for {len(transfers)} transfers"
    assert keys <= {ordering_key_of_lane(lane) for lane in range(OUTBOX_LANES)}
    assert seqs_by_transfer(received) == {t: [1, 2] for t in transfers}
    # A few threads come and go with the streaming pull; one per key would be 2,000.
    assert added_threads <= OUTBOX_LANES + 32, f"the emulator grew by {added_threads} threads"


def test_the_subscriptions_consumers_need_exist_before_anything_is_published(
    ledger_db_url: str, feeder: OutboxFeeder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An emulator of its own: it is restarted empty, as when `make run` restarts it.
    with PubSubEmulator() as emulator:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
        topic_id = unique("provisioned")
        consumer = unique("consumer")
        settings = relay_settings(ledger_db_url, topic_id, subscriptions=f" {consumer} ,")
        early = feeder.write(["tr_early_1", "tr_early_2"])  # before the relay or topic exist
        with running_relay(settings):
            wait_until(lambda: feeder.unpublished() == 0, 60, "the early rows published")
            with collecting(subscription_path(PROJECT, consumer)) as collector:
                first = collector.wait_for(2)
            emulator.restart()  # topics and subscriptions gone
            late = feeder.write(["tr_late_1", "tr_late_2", "tr_late_3"])
            wait_until(lambda: feeder.unpublished() == 0, 60, "the late rows published")
            with collecting(subscription_path(PROJECT, consumer)) as collector:
                second = collector.wait_for(3)
    assert {m.attributes[ce.ID] for m in first} == {m.event_id for m in early}
    assert {m.attributes[ce.ID] for m in second} == {m.event_id for m in late}
