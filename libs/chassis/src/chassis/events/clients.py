"""Pub/Sub clients and the few admin calls the suite needs (topics and subscriptions).

With ``PUBSUB_EMULATOR_HOST`` set the clients talk to the emulator over a plain
channel whose reconnect backoff is capped: gRPC's default grows to two minutes,
so after an emulator restart a relay would otherwise sit idle long after the
emulator is back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import grpc
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from google.pubsub_v1 import PublisherClient as PublisherApi
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

EMULATOR_HOST_ENV = "PUBSUB_EMULATOR_HOST"

_EMULATOR_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    # A publish request may carry up to 10 MB; a streaming pull response as much.
    ("grpc.max_send_message_length", 20 * 1024 * 1024),
    ("grpc.max_receive_message_length", 20 * 1024 * 1024),
]


def context_topic(context: str) -> str:
    """The topic a context's relay publishes to, unless configured otherwise."""
    return f"astra-{context}-events"


def topic_path(project: str, topic: str) -> str:
    return topic if topic.startswith("projects/") else f"projects/{project}/topics/{topic}"


def subscription_path(project: str, subscription: str) -> str:
    if subscription.startswith("projects/"):
        return subscription
    return f"projects/{project}/subscriptions/{subscription}"


def _emulator_channel() -> grpc.Channel | None:
    host = os.environ.get(EMULATOR_HOST_ENV)
    if not host:
        return None
    return grpc.insecure_channel(host, options=_EMULATOR_CHANNEL_OPTIONS)


def publisher_api() -> PublisherApi:
    """The low-level publisher: one ``publish`` call carries many messages.

    The high-level ``PublisherClient`` keeps one batch in flight per ordering
    key (~800 messages/s here); the relay orders its requests itself.
    """
    channel = _emulator_channel()
    if channel is None:
        return PublisherApi()
    return PublisherApi(transport=PublisherGrpcTransport(channel=channel))


def subscriber_client() -> pubsub_v1.SubscriberClient:
    """The high-level subscriber (streaming pull, lease management, ordered dispatch)."""
    channel = _emulator_channel()
    if channel is None:
        return pubsub_v1.SubscriberClient()
    return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))


def ensure_topic(publisher: PublisherApi, path: str) -> bool:
    """Create the topic unless it exists; True when it was created."""
    try:
        publisher.create_topic(name=path)
    except gexc.AlreadyExists:
        return False
    return True


def ensure_subscription(
    subscriber: pubsub_v1.SubscriberClient,
    path: str,
    topic: str,
    *,
    ordering: bool = True,
    ack_deadline_seconds: int = 30,
    min_redelivery_backoff: timedelta = timedelta(seconds=1),
    max_redelivery_backoff: timedelta = timedelta(seconds=60),
    retention: timedelta | None = None,
    expires_after_idle: timedelta | None = None,
) -> bool:
    """Create the subscription unless it exists; True when it was created.

    Ordering is on by default: one ordering key's messages are delivered one
    after another, in publish order. A nacked message comes back after the
    retry policy's backoff, not at once, so a failing handler does not spin.
    ``retention`` bounds how long unacknowledged messages are kept (Pub/Sub:
    10 minutes to 7 days); ``expires_after_idle`` deletes the subscription
    after that long without a subscriber (at least a day); None keeps Pub/Sub's
    defaults.
    """
    request: dict[str, Any] = {
        "name": path,
        "topic": topic,
        "enable_message_ordering": ordering,
        "ack_deadline_seconds": ack_deadline_seconds,
        "retry_policy": {
            "minimum_backoff": min_redelivery_backoff,
            "maximum_backoff": max_redelivery_backoff,
        },
    }
    if retention is not None:
        request["message_retention_duration"] = retention
    if expires_after_idle is not None:
        request["expiration_policy"] = {"ttl": expires_after_idle}
    try:
        subscriber.create_subscription(request=request)
    except gexc.AlreadyExists:
        return False
    return True


def provision(publisher: PublisherApi, topic: str, subscriptions: Sequence[str]) -> list[str]:
    """Create the topic and its subscriptions (full paths) where missing; the paths created.

    For where services create their own topics (the emulator): the subscriptions
    consumers need must exist before the first publish, or what is published
    before them is not delivered to them.
    """
    created = [topic] if ensure_topic(publisher, topic) else []
    if not subscriptions:
        return created
    subscriber = subscriber_client()
    try:
        for subscription in subscriptions:
            if ensure_subscription(subscriber, subscription, topic):
                created.append(subscription)
    finally:
        subscriber.close()
    return created


def delete_subscription(subscriber: pubsub_v1.SubscriberClient, path: str) -> None:
    try:
        subscriber.delete_subscription(subscription=path)
    except gexc.NotFound:
        return
