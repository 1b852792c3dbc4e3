"""The subscriber helper through real streaming pull: inbox, ack after commit, dead letters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from astra.ledger.v1 import events_pb2 as ev
from astra_testkit.waiting import wait_until
from chassis.config import PubSubSettings
from chassis.events import cloudevents as ce
from chassis.events.clients import (
    ensure_subscription,
    publisher_api,
    subscriber_client,
    subscription_path,
    topic_path,
)
from chassis.events.dead_letters import DEAD_LETTER_ATTEMPTS, DEAD_LETTER_REASON
from chassis.events.decoding import ReceivedEvent
from chassis.events.schema import lane_of, ordering_key_of_lane
from chassis.events.subscriber import EventSubscriber, Outcome, SubscriberOptions, subscribe
from google.pubsub_v1 import PubsubMessage
from sqlalchemy import Connection, func, select, text

from tests.outbox_fixtures import (
    PROJECT,
    CountingStore,
    OutboxFeeder,
    Topic,
    collecting,
    relay_settings,
    running_relay,
    unique,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def feeder(ledger_db_url: str) -> Iterator[OutboxFeeder]:
    feeder = OutboxFeeder(ledger_db_url, "ledger")
    yield feeder
    feeder.close()


@pytest.fixture
def topic(emulator_env: object) -> Topic:
    return Topic.create()


def started(subscriber: EventSubscriber) -> EventSubscriber:
    subscriber.start()
    return subscriber


def inbox_size(store: CountingStore) -> int:
    with store.engine.connect() as connection:
        return int(
            connection.execute(select(func.count()).select_from(store.tables.inbox)).scalar_one()
        )


def test_a_redelivered_event_has_no_second_effect(
    topic: Topic, ledger_db_url: str, feeder: OutboxFeeder, counting_store: CountingStore
) -> None:
    keys = [f"tr_once_{i}" for i in range(20)]
    feeder.write(keys)
    subscriber = started(counting_store.subscriber(topic.subscription))
    try:
        with running_relay(relay_settings(ledger_db_url, topic.id)):
            wait_until(lambda: counting_store.applied_total() == 20, 60, "20 events applied")
            # Publish every row a second time, as a relay that crashed before marking would.
            with feeder.engine.begin() as connection:
                connection.execute(text("UPDATE outbox SET published_at = NULL"))
            wait_until(
                lambda: subscriber.counts().get(Outcome.DUPLICATE, 0) == 20,
                60,
                "20 duplicates absorbed",
            )
    finally:
        subscriber.stop()
    assert counting_store.counts() == dict.fromkeys(keys, (1, 1, 0))
    assert subscriber.counts()[Outcome.APPLIED] == 20
    assert inbox_size(counting_store) == 20


def test_a_handler_that_always_fails_ends_on_the_dead_letter_path(
    topic: Topic, ledger_db_url: str, feeder: OutboxFeeder, counting_store: CountingStore
) -> None:
    poisoned = "tr_poison"

    def handler(event: ReceivedEvent[Any], connection: Connection) -> None:
        if event.subject == poisoned and event.message.metadata["seq"] == "2":
            raise ValueError("cannot apply this one")
        counting_store.count_posted(event, connection)

    subscriber = started(
        EventSubscriber(
            subscription=topic.subscription,
            engine=counting_store.engine,
            tables=counting_store.tables,
            handlers={ev.TransferPosted: handler},
            options=SubscriberOptions(max_attempts=3),
        )
    )
    try:
        feeder.write([poisoned, "tr_healthy"])
        feeder.write([poisoned, "tr_healthy"])  # the poisoned key's second event fails
        feeder.write([poisoned, "tr_healthy"])  # ...and must not block its third
        with running_relay(relay_settings(ledger_db_url, topic.id)):
            wait_until(lambda: counting_store.applied_total() == 5, 120, "5 events applied")
    finally:
        subscriber.stop()

    counts = counting_store.counts()
    assert counts["tr_healthy"] == (3, 3, 0)
    # Applied 1 and 3; the gap after the dead letter shows as one out-of-sequence step.
    assert counts[poisoned] == (2, 3, 1)
    [letter] = counting_store.dead_letters()
    assert letter["reason"] == "HANDLER_FAILED"
    assert letter["attempts"] == 3
    assert "ValueError: cannot apply this one" in letter["error"]
    assert letter["ordering_key"] == ordering_key_of_lane(lane_of(poisoned))
    assert json.loads(letter["attributes"])[ce.SUBJECT] == poisoned
    assert ev.TransferPosted.FromString(letter["data"]).metadata["seq"] == "2"
    assert json.loads(letter["attributes"])[ce.TYPE] == "astra.ledger.v1.TransferPosted"
    assert subscriber.counts()[Outcome.RETRY] == 2
    assert subscriber.counts()[Outcome.DEAD_LETTERED] == 1
    with counting_store.engine.connect() as connection:
        attempts = connection.execute(
            select(counting_store.tables.failures.c.attempts).where(
                counting_store.tables.failures.c.event_id == letter["event_id"]
            )
        ).scalar_one()
    assert attempts == 3


def test_undecodable_messages_go_straight_to_the_dead_letter_topic_and_table(
    topic: Topic, counting_store: CountingStore
) -> None:
    dead_letter_topic = Topic.create()
    publisher = publisher_api()
    good = ev.TransferPosted(transfer_id="tr_good", metadata={"seq": "1"})
    cloud = {
        ce.SOURCE: "//astra.test",
        ce.SPECVERSION: "1.0",
        ce.CONTENT_TYPE: ce.CONTENT_TYPE_PROTOBUF,
    }
    messages = [
        # Bytes that are no TransferPosted.
        PubsubMessage(
            data=b"\xff\xff\xff\xff",
            ordering_key="tr_bad",
            attributes={**cloud, ce.ID: "ev-garbage", ce.TYPE: "astra.ledger.v1.TransferPosted"},
        ),
        # No CloudEvents attributes at all.
        PubsubMessage(data=b"hello", ordering_key="tr_bad"),
        # A type no contract defines.
        PubsubMessage(
            data=b"",
            ordering_key="tr_bad",
            attributes={**cloud, ce.ID: "ev-unknown", ce.TYPE: "astra.nowhere.v1.Mystery"},
        ),
        # A known type this subscriber does not handle: acked and ignored.
        PubsubMessage(
            data=ev.AccountOpened().SerializeToString(),
            ordering_key="acct_x",
            attributes={**cloud, ce.ID: "ev-opened", ce.TYPE: "astra.ledger.v1.AccountOpened"},
        ),
        PubsubMessage(
            data=good.SerializeToString(),
            ordering_key="tr_good",
            attributes={**cloud, ce.ID: "ev-good", ce.TYPE: "astra.ledger.v1.TransferPosted"},
        ),
    ]
    subscriber = started(
        counting_store.subscriber(
            topic.subscription,
            SubscriberOptions(dead_letter_topic=dead_letter_topic.path),
            publisher=publisher,
        )
    )
    try:
        with collecting(dead_letter_topic.subscription) as copies:
            publisher.publish(topic=topic.path, messages=messages)
            wait_until(lambda: counting_store.applied_total() == 1, 60, "the good event applied")
            wait_until(lambda: len(counting_store.dead_letters()) == 3, 60, "3 dead letters")
            copied = copies.wait_for(3)
    finally:
        subscriber.stop()

    reasons = {letter["reason"]: letter for letter in counting_store.dead_letters()}
    assert set(reasons) == {"UNDECODABLE_DATA", "MISSING_ATTRIBUTE", "UNKNOWN_EVENT_TYPE"}
    assert reasons["UNDECODABLE_DATA"]["event_id"] == "ev-garbage"
    assert reasons["UNDECODABLE_DATA"]["data"] == b"\xff\xff\xff\xff"
    assert reasons["MISSING_ATTRIBUTE"]["event_id"].startswith("pubsub:")
    assert all(letter["attempts"] == 1 for letter in reasons.values())
    assert sorted(m.attributes[DEAD_LETTER_REASON] for m in copied) == sorted(reasons)
    assert all(m.attributes[DEAD_LETTER_ATTEMPTS] == "1" for m in copied)
    assert {m.data for m in copied} == {b"\xff\xff\xff\xff", b"hello", b""}
    assert subscriber.counts()[Outcome.IGNORED] == 1
    assert subscriber.counts()[Outcome.DEAD_LETTERED] == 3
    assert counting_store.counts() == {"tr_good": (1, 1, 0)}
    # Dead letters are in the inbox too, so a redelivery is not dead-lettered twice.
    assert inbox_size(counting_store) == 4


def test_subscribe_creates_what_it_needs_and_applies_each_event_once_or_dead_letters_it(
    emulator_env: object, ledger_db_url: str, feeder: OutboxFeeder, counting_store: CountingStore
) -> None:
    # Ids, not paths, none of them created yet: subscribe resolves them in the project
    # and, where topics may be created, makes the topics and an ordered subscription.
    topic_id, subscription_id, dead_letter_id = unique("kyc"), unique("sub"), unique("dead")

    def handler(event: ReceivedEvent[Any], connection: Connection) -> None:
        if event.subject == "tr_poison":
            raise ValueError("cannot apply this one")
        counting_store.count_posted(event, connection)

    subscriber = subscribe(
        topic=topic_id,
        subscription=subscription_id,
        engine=counting_store.engine,
        tables=counting_store.tables,
        handlers={ev.TransferPosted: handler},
        options=SubscriberOptions(max_attempts=2, dead_letter_topic=dead_letter_id),
        pubsub=PubSubSettings(project=PROJECT, create_topics=True),
    )
    try:
        client = subscriber_client()
        created = client.get_subscription(subscription=subscription_path(PROJECT, subscription_id))
        copies_path = subscription_path(PROJECT, unique("copies"))
        ensure_subscription(client, copies_path, topic_path(PROJECT, dead_letter_id))
        client.close()
        with collecting(copies_path) as copies:
            feeder.write(["tr_a", "tr_b", "tr_poison"])
            with running_relay(relay_settings(ledger_db_url, topic_id)):
                wait_until(lambda: counting_store.applied_total() == 2, 60, "2 events applied")
                wait_until(lambda: len(counting_store.dead_letters()) == 1, 60, "1 dead letter")
                # Everything again, as after a relay crash before its mark.
                with feeder.engine.begin() as connection:
                    connection.execute(text("UPDATE outbox SET published_at = NULL"))
                wait_until(
                    lambda: subscriber.counts().get(Outcome.DUPLICATE, 0) >= 3,
                    60,
                    "3 duplicates absorbed",
                )
            copied = copies.wait_for(1)
    finally:
        subscriber.stop()

    assert created.topic == topic_path(PROJECT, topic_id)
    assert created.enable_message_ordering
    assert subscriber.subscription == subscription_path(PROJECT, subscription_id)
    assert counting_store.counts() == {"tr_a": (1, 1, 0), "tr_b": (1, 1, 0)}
    [letter] = counting_store.dead_letters()
    assert (letter["reason"], letter["attempts"]) == ("HANDLER_FAILED", 2)
    assert [m.attributes[DEAD_LETTER_REASON] for m in copied] == ["HANDLER_FAILED"]
    assert copied[0].attributes[ce.SUBJECT] == "tr_poison"
    assert inbox_size(counting_store) == 3
