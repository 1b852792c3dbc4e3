"""Consuming events exactly once in effect: the inbox, ack after commit, and a dead-letter path.

Pub/Sub delivers at least once. For each message the subscriber decodes the
event by ``ce-type`` (``chassis.events.decoding``), then in ONE database
transaction records the event id in the inbox (``chassis.events.inbox``) and
runs the handler, and acks only after that transaction committed. A
redelivered event finds its id in the inbox and is acked without a second
effect; a crash before the commit leaves neither the effect nor the inbox row,
and the redelivery applies it.

A handler that fails has its attempt counted durably (taking Pub/Sub's own
``delivery_attempt`` into account when the subscription has one) and the
message is nacked, so Pub/Sub redelivers it after the subscription's retry
backoff. After ``max_attempts`` the message goes to the dead-letter path
(``chassis.events.dead_letters``); then it is acked so the stream (and the
rest of its ordering key) moves on. A message that cannot be decoded at all
goes there at once: trying again cannot help it.

Failures of the database itself are not the event's fault: they are not
counted, the message is nacked after a pause, and it is tried again.

A service consumes a topic with one call, ``subscribe(...)``: it names the
topic, its subscription, its database and its handlers, and gets a running
subscriber with the inbox, dead-lettering and the suite's defaults.

Throughput: messages that arrived together (``chassis.events.streaming``) are
applied in one transaction: one multi-row inbox insert tells which events are
new, their handlers run, one commit, then every message is acked. A commit per
event would cap a subscriber near the database's commit rate. If any handler
of a batch fails, the batch is rolled back and its messages take the
one-by-one path above, so failures are counted and dead-lettered per event.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from google.cloud import pubsub_v1
from google.protobuf.message import Message
from google.pubsub_v1 import PublisherClient as PublisherApi
from sqlalchemy import Connection, Engine

from chassis.config import PubSubSettings
from chassis.db.retry import is_database_unavailable, run_with_conflict_retry
from chassis.events import cloudevents as ce
from chassis.events.clients import (
    ensure_topic,
    provision,
    publisher_api,
    subscriber_client,
    subscription_path,
    topic_path,
)
from chassis.events.dead_letters import DeadLetter, DeadLetters
from chassis.events.decoding import (
    PulledMessage,
    ReceivedEvent,
    UndecodableEvent,
    decode_event,
    import_contract_events,
    message_class,
)
from chassis.events.inbox import Inbox
from chassis.events.schema import MAX_ERROR_TEXT, SubscriberTables
from chassis.events.streaming import StreamingPull, close_client
from chassis.logging import redact_text
from chassis.metrics import EVENTS_HANDLED
from chassis.tracing import consumer_span

_log = structlog.get_logger("chassis.subscriber")

Handler = Callable[[ReceivedEvent[Any], Connection], None]


class Outcome(enum.Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    RETRY = "retry"
    DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True)
class SubscriberOptions:
    # Failed handler runs of one event before it is dead-lettered.
    max_attempts: int = 5
    # Flow control: messages held by this process at once.
    max_outstanding_messages: int = 1000
    # Threads running handlers (each holds a database connection while it runs).
    workers: int = 8
    # Pause before nacking when the database was unavailable.
    unavailable_pause_seconds: float = 1.0
    # Topic for copies of dead-lettered messages (a full path; subscribe() also takes an
    # id); None keeps them in the table only.
    dead_letter_topic: str | None = None
    # After the stream failed (e.g. the subscription vanished), wait this long and resubscribe.
    resubscribe_seconds: float = 1.0
    # Most events applied in one transaction. Messages that arrived while a
    # worker was busy are applied together: one commit (one fsync) for all.
    batch_size: int = 100


@dataclass
class _Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: Counter[Outcome] = field(default_factory=Counter)

    def add(self, outcome: Outcome) -> None:
        with self.lock:
            self.counts[outcome] += 1

    def snapshot(self) -> dict[Outcome, int]:
        with self.lock:
            return dict(self.counts)


_Decoded = tuple[PulledMessage, ReceivedEvent[Any], Handler]


class EventSubscriber:
    """Runs handlers for one subscription, each event's effect exactly once.

    ``handlers`` maps event message classes to functions ``handler(event,
    connection)``; the connection is inside the transaction that also writes the
    inbox row, so the handler's writes (including its own outbox rows) commit or
    roll back with it. Events of other known types are acked and ignored.
    """

    def __init__(
        self,
        *,
        subscription: str,
        engine: Engine,
        tables: SubscriberTables,
        handlers: Mapping[type[Message], Handler],
        options: SubscriberOptions | None = None,
        client: pubsub_v1.SubscriberClient | None = None,
        publisher: PublisherApi | None = None,
        name: str | None = None,
    ) -> None:
        self.subscription = subscription
        # The inbox key: the subscription's short name, stable across projects.
        self.name = name or subscription.rsplit("/", 1)[-1]
        self.options = options or SubscriberOptions()
        self._engine = engine
        self._inbox = Inbox(tables, self.name)
        self._dead_letters = DeadLetters(
            tables=tables,
            inbox=self._inbox,
            subscription=subscription,
            name=self.name,
            topic=self.options.dead_letter_topic,
            publisher=publisher,
        )
        self._handlers = {cls.DESCRIPTOR.full_name: (cls, h) for cls, h in handlers.items()}
        import_contract_events()
        self._client = client
        self._stats = _Stats()
        self._stop = threading.Event()
        self._pull: StreamingPull | None = None

    # --- processing one message (the callback body; tests call it directly too) ---

    def handle(self, message: PulledMessage) -> Outcome:
        # A child of the span that recorded the event: one trace across the hop.
        with consumer_span(self.name, message.attributes) as span:
            outcome = self._handle(message)
            span.set_attribute("astra.outcome", outcome.name)
        self._count(outcome)
        return outcome

    def counts(self) -> dict[Outcome, int]:
        return self._stats.snapshot()

    def _count(self, outcome: Outcome) -> None:
        EVENTS_HANDLED.labels(self.name, outcome.name).inc()
        self._stats.add(outcome)

    def handle_batch(self, messages: list[PulledMessage]) -> list[Outcome]:
        """Apply several messages in one transaction; fall back to one by one on failure."""
        decoded: list[_Decoded] = []
        outcomes: list[Outcome] = []
        for message in messages:
            entry = self._handlers.get(message.attributes.get(ce.TYPE, ""))
            if entry is None:
                outcomes.append(self.handle(message))  # ignored or undecodable: its own path
                continue
            try:
                decoded.append((message, decode_event(message, entry[0]), entry[1]))
            except UndecodableEvent:
                outcomes.append(self.handle(message))
        if not decoded:
            return outcomes
        if len(decoded) == 1:
            return [*outcomes, self.handle(decoded[0][0])]
        try:
            fresh = run_with_conflict_retry(lambda: self._apply_batch(decoded))
        except Exception:
            # Someone's handler failed (or the database did): per event, with counting.
            return [*outcomes, *(self.handle(message) for message, _, _ in decoded)]
        for message, event, _ in decoded:
            # A redelivered copy queued beside the original counts as the duplicate.
            outcome = Outcome.APPLIED if event.id in fresh else Outcome.DUPLICATE
            fresh.discard(event.id)
            message.ack()
            self._count(outcome)
            outcomes.append(outcome)
        return outcomes

    def _apply_batch(self, decoded: list[_Decoded]) -> set[str]:
        with self._engine.begin() as connection:
            # By id: a redelivered copy queued beside its original is one inbox row.
            types = {event.id: event.type for _, event, _ in decoded}
            fresh = self._inbox.record_many(connection, types)
            applied: set[str] = set()
            for message, event, handler in decoded:
                if event.id not in fresh or event.id in applied:
                    continue
                with consumer_span(self.name, message.attributes):
                    handler(event, connection)
                applied.add(event.id)
            return fresh

    def _handle(self, message: PulledMessage) -> Outcome:
        attributes = message.attributes
        event_type = attributes.get(ce.TYPE, "")
        try:
            entry = self._handlers.get(event_type)
            if entry is None:
                if not event_type:
                    raise UndecodableEvent("MISSING_ATTRIBUTE", f"no {ce.TYPE} attribute")
                # Raises for a type no contract defines; a known type this subscriber
                # does not handle is simply not its business.
                message_class(event_type)
                message.ack()
                return Outcome.IGNORED
            event = decode_event(message, entry[0])
        except UndecodableEvent as error:
            _log.warning(
                "undecodable event",
                subscription=self.name,
                message_id=message.message_id,
                reason=error.reason,
                detail=error.detail,
            )
            letter = DeadLetter.of(message, reason=error.reason, error=error.detail, attempts=1)
            return self._dead_letter(message, letter)
        handler = entry[1]
        try:
            applied = run_with_conflict_retry(lambda: self._apply(event, handler))
        except Exception as error:
            return self._failed(message, event, error)
        message.ack()
        return Outcome.APPLIED if applied else Outcome.DUPLICATE

    def _apply(self, event: ReceivedEvent[Any], handler: Handler) -> bool:
        with self._engine.begin() as connection:
            if not self._inbox.record(connection, event.id, event.type):
                return False
            handler(event, connection)
            return True

    def _failed(
        self, message: PulledMessage, event: ReceivedEvent[Any], error: Exception
    ) -> Outcome:
        if is_database_unavailable(error):
            _log.warning("database unavailable; event will be retried", subscription=self.name)
            self._stop.wait(self.options.unavailable_pause_seconds)
            message.nack()
            return Outcome.RETRY
        # Kept in the inbox and the dead letters: without the values a database error quotes.
        text = redact_text(f"{type(error).__name__}: {error}")[:MAX_ERROR_TEXT]
        try:
            with self._engine.begin() as connection:
                counted = self._inbox.count_failure(connection, event.id, text)
        except Exception:
            _log.exception("cannot count a failed attempt; event will be retried")
            message.nack()
            return Outcome.RETRY
        attempts = max(counted, event.delivery_attempt)
        if attempts >= self.options.max_attempts:
            letter = DeadLetter.of(
                message, reason="HANDLER_FAILED", error=text, attempts=attempts, event=event
            )
            return self._dead_letter(message, letter)
        _log.warning(
            "handler failed; event will be redelivered",
            subscription=self.name,
            event_id=event.id,
            event_type=event.type,
            attempt=attempts,
            max_attempts=self.options.max_attempts,
            error=text,
        )
        message.nack()
        return Outcome.RETRY

    def _dead_letter(self, message: PulledMessage, letter: DeadLetter) -> Outcome:
        try:
            self._dead_letters.put(self._engine, message, letter)
        except Exception:
            _log.exception(
                "cannot dead-letter an event; it will be retried", event_id=letter.event_id
            )
            self._stop.wait(self.options.unavailable_pause_seconds)
            message.nack()
            return Outcome.RETRY
        _log.error(
            "event dead-lettered",
            subscription=self.name,
            event_id=letter.event_id,
            event_type=letter.event_type,
            reason=letter.reason,
            attempts=letter.attempts,
            error=letter.error,
        )
        message.ack()
        return Outcome.DEAD_LETTERED

    # --- streaming pull ---

    def start(self) -> None:
        """Open the streaming pull; it is reopened if it fails, until ``stop``."""
        if self._client is None:
            self._client = subscriber_client()
        self._pull = StreamingPull(
            self._client,
            self.subscription,
            self.handle_batch,
            name=self.name,
            workers=self.options.workers,
            batch_size=self.options.batch_size,
            max_outstanding_messages=self.options.max_outstanding_messages,
            resubscribe_seconds=self.options.resubscribe_seconds,
        )
        self._pull.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop pulling and applying, and close the client, within ``timeout`` seconds in all
        (``StreamingPull.stop``: what is still under way then is logged and left behind)."""
        self._stop.set()
        if self._pull is not None:
            self._pull.stop(timeout)
        elif self._client is not None:
            close_client(self._client, self.subscription, time.monotonic() + timeout)


def subscribe(
    *,
    topic: str,
    subscription: str,
    engine: Engine,
    tables: SubscriberTables,
    handlers: Mapping[type[Message], Handler],
    options: SubscriberOptions | None = None,
    pubsub: PubSubSettings | None = None,
) -> EventSubscriber:
    """Consume ``subscription`` of ``topic`` into ``handlers``: a running subscriber to ``stop()``.

    ``topic``, ``subscription`` and ``options.dead_letter_topic`` are ids in the
    project of ``pubsub`` (``ASTRA_PUBSUB_*`` when not given) or full paths.
    Where topics may be created (``ASTRA_PUBSUB_CREATE_TOPICS``: development and
    the emulator), the topic, an ordered subscription and the dead-letter topic
    are created when missing; elsewhere they must exist (Terraform makes them).
    Each handler runs in the transaction that records its event in the inbox of
    ``tables``; an event that failed ``options.max_attempts`` times is
    dead-lettered, copied to the dead-letter topic when there is one.
    """
    settings = pubsub or PubSubSettings()
    options = options or SubscriberOptions()
    topic = topic_path(settings.project, topic)
    subscription = subscription_path(settings.project, subscription)
    if options.dead_letter_topic:
        options = dataclasses.replace(
            options, dead_letter_topic=topic_path(settings.project, options.dead_letter_topic)
        )
    publisher = publisher_api() if settings.create_topics or options.dead_letter_topic else None
    if publisher is not None and settings.create_topics:
        provision(publisher, topic, [subscription])
        if options.dead_letter_topic:
            ensure_topic(publisher, options.dead_letter_topic)
    subscriber = EventSubscriber(
        subscription=subscription,
        engine=engine,
        tables=tables,
        handlers=handlers,
        options=options,
        publisher=publisher,
    )
    subscriber.start()
    return subscriber
