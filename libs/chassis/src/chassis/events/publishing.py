"""Outbox rows as Pub/Sub publish requests: packing, CloudEvents messages, the publish call.

Each lane is published under one ordering key (``lane-NN``): Pub/Sub keeps a
key's messages in publish order, and a lane's requests go one after another,
so each aggregate's events (all in one lane) arrive in order while a topic
never has more than ``OUTBOX_LANES`` keys.

Where the relay may create its topic (development), it creates the
subscriptions consumers need with it, before its first publish and again when
the topic turns out gone (an emulator restarted empty): an event published
before its consumers' subscriptions exist is never delivered to them. In
production Terraform creates both.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import structlog
from google.api_core import exceptions as gexc
from google.protobuf.message import Message
from google.pubsub_v1 import PublisherClient as PublisherApi
from google.pubsub_v1 import PublishRequest, PubsubMessage

from chassis.events import cloudevents
from chassis.events.clients import provision, publisher_api
from chassis.events.outbox_store import OutboxRow
from chassis.events.schema import ordering_key_of_lane

_log = structlog.get_logger("chassis.relay")

# Pub/Sub refuses requests over 10 MB; leave room for framing.
MAX_REQUEST_BYTES = 9_000_000


class PublishFailed(Exception):
    def __init__(self, failed: int, requests: int, first: BaseException) -> None:
        super().__init__(f"{failed} of {requests} publish requests failed: {first}")
        self.first = first


def pack_requests(
    rows: Sequence[OutboxRow], max_messages: int, max_bytes: int = MAX_REQUEST_BYTES
) -> tuple[list[list[OutboxRow]], bool]:
    """Group rows into publish requests, each lane whole in one request and in id order.

    Requests run concurrently, and Pub/Sub keeps order only within a request or
    across requests sent one after another; so a lane's rows never span two
    requests of a round. A lane that does not fit in one request is cut to a
    prefix (the rest waits for the next round); the flag says something was cut.
    """
    by_lane: dict[int, list[OutboxRow]] = {}
    for row in sorted(rows, key=lambda r: (r.lane, r.id)):
        by_lane.setdefault(row.lane, []).append(row)
    requests: list[list[OutboxRow]] = []
    current: list[OutboxRow] = []
    current_bytes = 0
    cut = False
    for lane_rows in by_lane.values():
        prefix: list[OutboxRow] = []
        prefix_bytes = 0
        for row in lane_rows:
            size = row.approximate_size()
            if prefix and (len(prefix) >= max_messages or prefix_bytes + size > max_bytes):
                cut = True
                break
            prefix.append(row)
            prefix_bytes += size
        if current and (
            len(current) + len(prefix) > max_messages or current_bytes + prefix_bytes > max_bytes
        ):
            requests.append(current)
            current, current_bytes = [], 0
        current.extend(prefix)
        current_bytes += prefix_bytes
    if current:
        requests.append(current)
    return requests, cut


# The raw protobuf classes under the client's proto-plus wrappers: building a
# wrapper per message cost the relay a quarter of its CPU (about 9x a raw one).
_RAW_MESSAGE: Any = PubsubMessage.pb()
_RAW_PUBLISH_REQUEST: Any = PublishRequest.pb()


def to_pubsub_message(row: OutboxRow, source: str) -> Message:
    """The row as a raw ``google.pubsub.v1.PubsubMessage`` (CloudEvents binary mode).

    The ordering key is the row's lane's, not the aggregate's: a topic carries
    at most ``OUTBOX_LANES`` keys. The aggregate's id goes in ``ce-subject``.
    """
    headers = json.loads(row.headers) if row.headers else None
    message: Message = _RAW_MESSAGE(
        data=row.payload,
        ordering_key=ordering_key_of_lane(row.lane),
        attributes=cloudevents.binary_attributes(
            event_id=row.event_id,
            event_type=row.event_type,
            source=source,
            time=row.occurred_at,
            subject=row.aggregate_id,
            headers=headers,
        ),
    )
    return message


class OutboxPublisher:
    """Publishes outbox rows to one topic, creating it (and its subscriptions) where allowed."""

    def __init__(
        self,
        *,
        topic: str,
        subscriptions: Sequence[str],
        source: str,
        timeout_seconds: float,
        create_topic: bool,
        api: PublisherApi | None = None,
    ) -> None:
        self.topic = topic
        self.subscriptions = list(subscriptions)
        self.source = source
        self._timeout = timeout_seconds
        self._create_topic = create_topic
        self._topic_ready = not create_topic
        # Made on first use: measuring lag needs no Pub/Sub (nor credentials).
        self._api = api

    @property
    def api(self) -> PublisherApi:
        if self._api is None:
            self._api = publisher_api()
        return self._api

    def ensure_topic(self) -> None:
        """The topic and the subscriptions consumers need, before anything is published."""
        if self._topic_ready:
            return
        for path in provision(self.api, self.topic, self.subscriptions):
            _log.info("created", path=path, topic=self.topic)
        self._topic_ready = True

    def note_failures(self, errors: Sequence[BaseException]) -> None:
        """After failed requests: a topic found gone is created again before the next publish."""
        if self._create_topic and any(isinstance(e, gexc.NotFound) for e in errors):
            self._topic_ready = False  # e.g. an emulator that restarted empty

    def publish(self, rows: list[OutboxRow]) -> None:
        """One publish request of the rows; raises unless Pub/Sub acknowledged every one."""
        messages = [to_pubsub_message(row, self.source) for row in rows]
        request = PublishRequest.wrap(_RAW_PUBLISH_REQUEST(topic=self.topic, messages=messages))
        response = self.api.publish(
            request=request,
            retry=None,  # retries are the relay's, with the rows still unpublished
            timeout=self._timeout,
        )
        if len(response.message_ids) != len(messages):
            raise RuntimeError(
                f"Pub/Sub acknowledged {len(response.message_ids)} of {len(messages)} messages"
            )
