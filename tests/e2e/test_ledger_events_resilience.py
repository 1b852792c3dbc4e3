"""The relay as a real process through a crash (kill -9) and a Pub/Sub outage.

Transfers are posted over gRPC to the ledger (in this process, on its own
PostgreSQL database). A subscriber built on the chassis helper counts each
TransferPosted per transfer in its own PostgreSQL database, with the inbox in
the same transaction: a count of 2 anywhere would be a duplicate that got
through, a missing transfer an event lost.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest
from astra.ledger.v1 import ledger_pb2 as pb
from astra.ledger.v1.ledger_pb2_grpc import LedgerServiceStub
from astra_testkit.pubsub_emulator import PubSubEmulator
from astra_testkit.waiting import wait_until
from chassis.events.clients import (
    ensure_subscription,
    ensure_topic,
    publisher_api,
    subscriber_client,
)
from chassis.events.subscriber import Outcome

from tests.outbox_fixtures import (
    CountingStore,
    OutboxFeeder,
    Topic,
    relay_process,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def outbox(ledger_db_url: str) -> Iterator[OutboxFeeder]:
    feeder = OutboxFeeder(ledger_db_url, "ledger")
    yield feeder
    feeder.close()


def leg(account_id: str, direction: int, amount: int) -> pb.Leg:
    return pb.Leg(account_id=account_id, direction=direction, amount=amount, currency="EUR")  # type: ignore[arg-type]


def post_transfers(stub: LedgerServiceStub, prefix: str, count: int) -> list[str]:
    """One CreateTransfers call; every item must be applied."""
    ids = [f"tr_{prefix}_{i}" for i in range(count)]
    response = stub.CreateTransfers(
        pb.CreateTransfersRequest(
            transfers=[
                pb.TransferSpec(
                    id=transfer_id,
                    movement=pb.Movement(
                        legs=[
                            leg("acct_src", pb.DIRECTION_DEBIT, 1),
                            leg("acct_dst", pb.DIRECTION_CREDIT, 1),
                        ]
                    ),
                )
                for transfer_id in ids
            ]
        )
    )
    assert all(result.ok for result in response.results), [
        r.reason for r in response.results if not r.ok
    ][:3]
    return ids


def open_accounts(stub: LedgerServiceStub) -> None:
    for account_id in ("acct_src", "acct_dst"):
        stub.OpenAccount(
            pb.OpenAccountRequest(
                account=pb.Account(id=account_id, currency="EUR", normal_side=pb.NORMAL_SIDE_CREDIT)
            )
        )


def published(outbox: OutboxFeeder) -> int:
    return outbox.total() - outbox.unpublished()


def test_a_relay_killed_mid_stream_loses_nothing_and_duplicates_have_no_effect(
    own_emulator: PubSubEmulator,
    ledger_stub: LedgerServiceStub,
    ledger_db_url: str,
    outbox: OutboxFeeder,
    counting_store: CountingStore,
) -> None:
    batches, per_batch = 40, 100
    total = batches * per_batch
    topic = Topic.create()
    subscriber = counting_store.subscriber(topic.subscription)
    subscriber.start()
    open_accounts(ledger_stub)
    # Small rounds, so that the kill lands between many publishes and marks.
    small_rounds = {"RELAY_BATCH_SIZE": "50", "RELAY_MAX_ROWS_PER_ROUND": "200"}
    relay = relay_process(ledger_db_url, own_emulator.host, topic.id, "relay-1", **small_rounds)
    posted: list[str] = []

    def write_all() -> None:
        for batch in range(batches):
            posted.extend(post_transfers(ledger_stub, f"crash{batch}", per_batch))

    writer = threading.Thread(target=write_all, name="transfer-writer")
    restarted = None
    try:
        writer.start()
        wait_until(lambda: published(outbox) >= total // 4, 120, "a quarter published")
        relay.kill()
        at_kill = published(outbox)
        assert not relay.alive()
        assert at_kill < total + 2  # the stream (and the writer) was still going
        restarted = relay_process(
            ledger_db_url, own_emulator.host, topic.id, "relay-2", **small_rounds
        )
        writer.join(120)
        assert len(posted) == total
        wait_until(lambda: outbox.unpublished() == 0, 120, "the outbox drained")
        wait_until(
            lambda: counting_store.applied_total() >= total, 300, f"{total} transfers applied"
        )
    finally:
        subscriber.stop()
        relay.kill()
        if restarted is not None:
            restarted.terminate()
        writer.join(60)

    counts = counting_store.counts()
    assert set(counts) == set(posted)
    assert {applied for applied, _seq, _gaps in counts.values()} == {1}
    outcomes = subscriber.counts()
    assert outcomes[Outcome.APPLIED] == total
    print(
        f"killed at {at_kill} published; duplicates absorbed: {outcomes.get(Outcome.DUPLICATE, 0)}"
    )


def test_writes_go_on_while_pubsub_is_down_and_the_backlog_drains_after(
    ledger_stub: LedgerServiceStub,
    ledger_db_url: str,
    outbox: OutboxFeeder,
    counting_store: CountingStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with PubSubEmulator() as emulator:  # its own: this test stops and restarts it
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
        topic = Topic.create()
        subscriber = counting_store.subscriber(topic.subscription)
        subscriber.start()
        relay = relay_process(ledger_db_url, emulator.host, topic.id)
        try:
            open_accounts(ledger_stub)
            before = post_transfers(ledger_stub, "before", 100)
            wait_until(lambda: counting_store.applied_total() == 100, 120, "100 applied")
            subscriber.stop()

            emulator.stop()
            during = []
            for batch in range(3):
                during += post_transfers(ledger_stub, f"during{batch}", 100)
            wait_until(lambda: "relay round failed" in relay.logs(), 60, "a failed publish")
            backlog = outbox.unpublished()
            assert backlog == 300  # 300 TransferPosted waiting, none lost, none published
            assert relay.alive()

            # Hold the relay while the emulator comes back empty and the test recreates
            # its topic and subscription: events published before that would be dropped.
            os.kill(relay.pid, signal.SIGSTOP)
            try:
                emulator.restart()
                ensure_topic(publisher_api(), topic.path)
                client = subscriber_client()
                ensure_subscription(client, topic.subscription, topic.path, ordering=True)
                client.close()
            finally:
                os.kill(relay.pid, signal.SIGCONT)
            subscriber = counting_store.subscriber(topic.subscription)
            subscriber.start()
            after = post_transfers(ledger_stub, "after", 50)
            wait_until(lambda: outbox.unpublished() == 0, 120, "the backlog drained")
            wait_until(lambda: counting_store.applied_total() == 450, 120, "450 applied")
        finally:
            subscriber.stop()
            relay.terminate()

    counts = counting_store.counts()
    assert set(counts) == {*before, *during, *after}
    assert {applied for applied, _seq, _gaps in counts.values()} == {1}
