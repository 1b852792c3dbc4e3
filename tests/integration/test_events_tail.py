"""``astra-events`` at load: an unordered subscription with bounded backlog, removed on exit."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator

import pytest
from astra_testkit.pubsub_emulator import PubSubEmulator
from astra_testkit.waiting import wait_until
from chassis.events import cloudevents as ce
from chassis.events.clients import subscriber_client
from chassis.events.tail import tail
from google.api_core import exceptions as gexc

from tests.outbox_fixtures import PROJECT, OutboxFeeder, Topic, relay_settings, running_relay

pytestmark = pytest.mark.integration


@pytest.fixture
def feeder(ledger_db_url: str) -> Iterator[OutboxFeeder]:
    feeder = OutboxFeeder(ledger_db_url, "ledger")
    yield feeder
    feeder.close()


def test_the_tail_reads_through_an_unordered_short_lived_subscription(
    emulator_env: PubSubEmulator, ledger_db_url: str, feeder: OutboxFeeder
) -> None:
    topic = Topic.create()
    out = io.StringIO()
    subscriptions: list[str] = []
    printed: list[int] = []

    def run() -> None:
        printed.append(
            tail(
                topic.id,
                project=PROJECT,
                count=300,
                timeout=120,
                out=out,
                on_ready=lambda _topic, path: subscriptions.append(path),
            )
        )

    reader = threading.Thread(target=run, name="tail")
    reader.start()
    wait_until(lambda: bool(subscriptions), 30, "the tail to subscribe")
    client = subscriber_client()
    try:
        settings = client.get_subscription(subscription=subscriptions[0])
        transfers = [f"tr_tail_{i}" for i in range(300)]
        with running_relay(relay_settings(ledger_db_url, topic.id)):
            feeder.write(transfers)
            reader.join(120)
        assert not reader.is_alive()
        with pytest.raises(gexc.NotFound):
            client.get_subscription(subscription=subscriptions[0])
    finally:
        client.close()

    # Ordering costs the emulator a thread per key and the tail nothing but order.
    assert settings.enable_message_ordering is False
    assert settings.message_retention_duration.total_seconds() == 600
    assert settings.expiration_policy.ttl.total_seconds() == 86400
    assert printed == [300]
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert sorted(line["subject"] for line in lines) == sorted(transfers)
    assert all(line["attributes"][ce.SUBJECT] == line["subject"] for line in lines)
