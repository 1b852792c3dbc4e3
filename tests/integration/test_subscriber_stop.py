"""Stopping a subscriber is bounded by its timeout, whatever Pub/Sub does meanwhile.

With Pub/Sub gone, the client library holds its stream's shutdown and its
channel's close while it waits to reconnect, throttled, for up to about ten
seconds. ``EventSubscriber.stop(timeout)`` returns within its timeout anyway:
what is still closing is logged and left to finish on a daemon thread. How
long stopping took is printed, not asserted: speed is for the bench.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from typing import Any, cast

import pytest
from astra_testkit.pubsub_emulator import PubSubEmulator
from chassis.events.clients import subscriber_client
from google.cloud import pubsub_v1
from structlog.testing import capture_logs

from tests.outbox_fixtures import CountingStore, Topic

pytestmark = pytest.mark.integration


class HeldClose:
    """A real subscriber client whose ``close`` waits until the test lets it go, as the
    client library's throttled reconnect holds it when Pub/Sub is gone."""

    def __init__(self) -> None:
        self._client = subscriber_client()
        self.closing, self.release, self.closed = (threading.Event() for _ in range(3))

    def subscribe(self, *args: Any, **kwargs: Any) -> Any:
        return self._client.subscribe(*args, **kwargs)

    def close(self) -> None:
        self.closing.set()
        self.release.wait(120)
        self._client.close()
        self.closed.set()


def test_stop_returns_within_its_timeout_while_the_client_is_still_closing(
    emulator_env: PubSubEmulator, counting_store: CountingStore
) -> None:
    topic = Topic.create()
    client = HeldClose()
    subscriber = counting_store.subscriber(
        topic.subscription, client=cast(pubsub_v1.SubscriberClient, client)
    )
    subscriber.start()
    stopper = threading.Thread(target=subscriber.stop, args=(1.0,), daemon=True)
    try:
        with capture_logs() as logs:
            started = time.monotonic()
            stopper.start()
            stopper.join(60)  # only a stop that waits for the close would take this long
            print(f"stop returned after {time.monotonic() - started:.2f}s")
        assert not stopper.is_alive(), "stop() waited for the client's close"
        assert client.closing.is_set()
        assert not client.closed.is_set()
        assert [line["event"] for line in logs if line["log_level"] == "warning"] == [
            "Pub/Sub client still closing; left behind"
        ]
    finally:
        client.release.set()
    # The close left behind still finishes on its own.
    assert client.closed.wait(60)


# Run in a process of its own: a subscriber whose emulator is killed once it is running,
# then stopped; the process must exit by itself afterwards.
_SUBSCRIBER_PROCESS = """
import json, sys, time
from astra.ledger.v1 import events_pb2 as ev
from chassis.db.engine import create_db_engine
from chassis.events.schema import SubscriberTables
from chassis.events.subscriber import EventSubscriber
from sqlalchemy import MetaData

database_url, subscription = sys.argv[1:3]
subscriber = EventSubscriber(
    subscription=subscription,
    engine=create_db_engine(database_url, pool_size=2),
    tables=SubscriberTables.define(MetaData()),
    handlers={ev.TransferPosted: lambda event, connection: None},
)
subscriber.start()
print(json.dumps({"started": True}), flush=True)
sys.stdin.readline()  # the emulator is gone when this line comes
started = time.monotonic()
subscriber.stop(1.0)
print(json.dumps({"stopped_after": round(time.monotonic() - started, 2)}), flush=True)
"""


def test_a_subscriber_whose_emulator_was_killed_stops_and_its_process_exits(
    own_emulator: PubSubEmulator, counting_store: CountingStore
) -> None:
    topic = Topic.create()
    process = subprocess.Popen(
        [sys.executable, "-c", _SUBSCRIBER_PROCESS, counting_store.url, topic.subscription],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith('{"started"'):
                break
        assert lines[-1:] == ['{"started": true}\n'], "".join(lines)
        own_emulator.stop()
        time.sleep(1)  # not a check: the library's reconnecting gets under way meanwhile
        started = time.monotonic()
        output, _ = process.communicate("stop\n", timeout=120)
        print(f"the subscriber's process exited {time.monotonic() - started:.2f}s after stop")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    reports = [json.loads(line) for line in output.splitlines() if line.startswith('{"stopped')]
    assert len(reports) == 1, output
    print(f"stop returned after {reports[0]['stopped_after']}s")
