"""Consuming events exactly once in effect: the inbox, ack after commit, and a dead-letter path.

Pub/Sub delivers at least once. For each message the helper decodes the event
by ``ce-type``, then in ONE database transaction records the event id in the
``inbox`` and runs the handler, and acks only after that transaction committed.
A redelivered event finds its id in the inbox and is acked without a second
effect; a crash before the commit leaves neither the effect nor the inbox row,
and the redelivery applies it.

A handler that fails has its attempt counted durably (``inbox_failures``,
taking Pub/Sub's own ``delivery_attempt`` into account when the subscription
has one) and the message is nacked, so Pub/Sub redelivers it after the
subscription's retry backoff. After ``max_attempts`` the message goes to the
dead-letter path: a ``dead_letters`` row (the original data and attributes,
the reason and the last error) and the inbox row in one transaction, and, when
configured, a copy on a dead-letter topic; then it is acked so the stream (and
the rest of its ordering key) moves on. A message that cannot be decoded at
all goes there at once: trying again cannot help it.

Failures of the database itself are not the event's fault: they are not
counted, the message is nacked after a pause, and it is tried again.

Throughput: the streaming pull's callback only queues a message; worker
threads take whatever has queued (up to ``batch_size``) and apply it in one
transaction: one multi-row inbox insert tells which events are new, their
handlers run, one commit, then every message is acked. A commit per event
would cap a subscriber near the database's commit rate. If any handler of a
batch fails, the batch is rolled back and its messages take the one-by-one
path above, so failures are counted and dead-lettered per event. Order per
ordering key is kept: the client library hands out a key's next message only
after the previous one was acked or nacked.
"""

from __future__ import annotations

import contextlib
import enum
import json
import queue
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

import structlog
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.subscriber.scheduler import Scheduler
from google.protobuf.message import Message
from google.pubsub_v1 import PublisherClient as PublisherApi
from google.pubsub_v1 import PubsubMessage
from sqlalchemy import Connection, Engine, Insert, Table
from sqlalchemy.dialects import postgresql, sqlite

from chassis.batching import drain
from chassis.db.retry import is_database_unavailable, run_with_conflict_retry
from chassis.events import cloudevents as ce
from chassis.events.clients import subscriber_client
from chassis.events.decoding import UndecodableEvent, import_contract_events, message_class
from chassis.events.schema import dead_letters_table, inbox_failures_table, inbox_table
from chassis.metrics import EVENTS_HANDLED
from chassis.tracing import consumer_span

_log = structlog.get_logger("chassis.subscriber")

M = TypeVar("M", bound=Message)

# Column limits of the inbox tables.
_MAX_EVENT_ID = 64
_MAX_ERROR_TEXT = 2000
# Pub/Sub caps an attribute value at 1,024 bytes.
_MAX_ATTRIBUTE = 1000

DEAD_LETTER_REASON = "astra-dead-letter-reason"
DEAD_LETTER_ERROR = "astra-dead-letter-error"
DEAD_LETTER_ATTEMPTS = "astra-dead-letter-attempts"
DEAD_LETTER_SUBSCRIPTION = "astra-dead-letter-subscription"
DEAD_LETTER_MESSAGE_ID = "astra-dead-letter-message-id"


class PulledMessage(Protocol):
    """What the helper uses of a received message (the client library's ``Message``)."""

    @property
    def data(self) -> bytes: ...
    @property
    def attributes(self) -> Mapping[str, str]: ...
    @property
    def message_id(self) -> str: ...
    @property
    def ordering_key(self) -> str: ...
    @property
    def delivery_attempt(self) -> int | None: ...
    def ack(self) -> None: ...
    def nack(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ReceivedEvent(Generic[M]):
    """A decoded event and its CloudEvents context, as a handler sees it."""

    id: str
    type: str
    source: str
    time: datetime | None
    # The aggregate the event is about (``ce-subject``); "" when the producer set none.
    subject: str
    ordering_key: str
    message_id: str
    attributes: Mapping[str, str]
    message: M
    delivery_attempt: int


Handler = Callable[[ReceivedEvent[Any], Connection], None]


class Outcome(enum.Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    RETRY = "retry"
    DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True)
class SubscriberTables:
    """The subscriber's bookkeeping tables in the context's own database."""

    inbox: Table
    failures: Table
    dead_letters: Table

    @classmethod
    def define(cls, metadata: Any, inbox: Table | None = None) -> SubscriberTables:
        """Add the tables to ``metadata`` (reusing an ``inbox`` already defined there)."""
        return cls(
            inbox=inbox if inbox is not None else inbox_table(metadata),
            failures=inbox_failures_table(metadata),
            dead_letters=dead_letters_table(metadata),
        )


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
    # Full topic path for copies of dead-lettered messages; None keeps them in the table only.
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


def _insert(connection: Connection, table: Table) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (PostgreSQL and SQLite both)."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _insert_ignore(connection: Connection, table: Table, values: dict[str, Any]) -> bool:
    """Insert unless the key exists; True when the row is new.

    RETURNING says so reliably: rowcount is -1 for this statement under psycopg.
    """
    primary = next(iter(table.primary_key.columns))
    statement: Insert = _insert(connection, table).values(**values).on_conflict_do_nothing()
    return connection.execute(statement.returning(primary)).first() is not None


class QueueingScheduler(Scheduler):  # type: ignore[misc]  # the library ships no types
    """Runs the subscriber's callback (a queue put) right in the client library's thread.

    The library's default scheduler submits every message to a thread pool,
    whose task would only be to queue it for our workers: a thread hop and an
    executor submit per message, a tenth of a subscriber's interpreter time at
    1,000 events/s (py-spy), and a wait for the interpreter lock on a busy host.
    """

    def __init__(self) -> None:
        # The library's channel back to its dispatcher (acks, nacks, lease changes).
        self._requests: queue.Queue[Any] = queue.Queue()

    @property
    def queue(self) -> queue.Queue[Any]:
        return self._requests

    def schedule(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        callback(*args, **kwargs)

    def shutdown(self, await_msg_callbacks: bool = False) -> list[Any]:
        # Nothing waits here: every message was handed to the workers' queue at once.
        return []


def decode_event(message: PulledMessage, cls: type[M]) -> ReceivedEvent[M]:
    """The event in ``message`` as ``cls``, or UndecodableEvent saying why not."""
    attributes = message.attributes
    missing = [name for name in ce.REQUIRED if not attributes.get(name)]
    if missing:
        raise UndecodableEvent("MISSING_ATTRIBUTE", f"missing {', '.join(missing)}")
    event_id = attributes[ce.ID]
    if len(event_id) > _MAX_EVENT_ID:
        raise UndecodableEvent("INVALID_ATTRIBUTE", f"{ce.ID} longer than {_MAX_EVENT_ID}")
    content_type = attributes.get(ce.CONTENT_TYPE, ce.CONTENT_TYPE_PROTOBUF)
    if content_type != ce.CONTENT_TYPE_PROTOBUF:
        raise UndecodableEvent("UNSUPPORTED_CONTENT_TYPE", content_type)
    time: datetime | None = None
    if attributes.get(ce.TIME):
        try:
            time = ce.parse_time(attributes[ce.TIME])
        except ValueError as error:
            raise UndecodableEvent("INVALID_ATTRIBUTE", f"{ce.TIME}: {error}") from error
    payload = cls()
    try:
        payload.ParseFromString(message.data)
    except Exception as error:  # DecodeError; whatever the parser raises, the bytes are bad
        raise UndecodableEvent("UNDECODABLE_DATA", f"{cls.__name__}: {error}") from error
    return ReceivedEvent(
        id=event_id,
        type=attributes[ce.TYPE],
        source=attributes[ce.SOURCE],
        time=time,
        subject=attributes.get(ce.SUBJECT, ""),
        ordering_key=message.ordering_key,
        message_id=message.message_id,
        attributes=dict(attributes),
        message=payload,
        delivery_attempt=message.delivery_attempt or 0,
    )


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
        self._engine = engine
        self._tables = tables
        self._inbox_insert_sql = (
            f"INSERT INTO {tables.inbox.name} (subscription, event_id, event_type) "
            "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]) "
            "ON CONFLICT DO NOTHING RETURNING event_id"
        )
        self._handlers = {cls.DESCRIPTOR.full_name: (cls, h) for cls, h in handlers.items()}
        import_contract_events()
        self.options = options or SubscriberOptions()
        if self.options.dead_letter_topic and publisher is None:
            raise ValueError("a dead-letter topic needs a publisher")
        self._client = client
        self._publisher = publisher
        self._stats = _Stats()
        self._stop = threading.Event()
        self._future: Any = None
        self._supervisor: threading.Thread | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []

    # --- processing one message (the callback body; tests call it directly too) ---

    def handle(self, message: PulledMessage) -> Outcome:
        # A child of the span that recorded the event: one trace across the hop.
        with consumer_span(self.name, message.attributes) as span:
            outcome = self._handle(message)
            span.set_attribute("astra.outcome", outcome.name)
        EVENTS_HANDLED.labels(self.name, outcome.name).inc()
        self._stats.add(outcome)
        return outcome

    def counts(self) -> dict[Outcome, int]:
        return self._stats.snapshot()

    def handle_batch(self, messages: list[PulledMessage]) -> list[Outcome]:
        """Apply several messages in one transaction; fall back to one by one on failure."""
        decoded: list[tuple[PulledMessage, ReceivedEvent[Any], Handler]] = []
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
            EVENTS_HANDLED.labels(self.name, outcome.name).inc()
            self._stats.add(outcome)
            outcomes.append(outcome)
        return outcomes

    def _apply_batch(
        self, decoded: list[tuple[PulledMessage, ReceivedEvent[Any], Handler]]
    ) -> set[str]:
        with self._engine.begin() as connection:
            # By id: a redelivered copy queued beside its original is one inbox row.
            types = {event.id: event.type for _, event, _ in decoded}
            fresh = self._record_in_inbox(connection, types)
            applied: set[str] = set()
            for message, event, handler in decoded:
                if event.id not in fresh or event.id in applied:
                    continue
                with consumer_span(self.name, message.attributes):
                    handler(event, connection)
                applied.add(event.id)
            return fresh

    def _record_in_inbox(self, connection: Connection, types: dict[str, str]) -> set[str]:
        """Inbox rows for the event ids (mapped to their types) it lacks; the ids it lacked."""
        if connection.dialect.name == "postgresql":
            # One statement text whatever the batch size, the rows as three arrays:
            # psycopg parses and prepares it once. A multi-row VALUES list has a new
            # text for every batch size, parsed again each time.
            result = connection.exec_driver_sql(
                self._inbox_insert_sql,
                ([self.name] * len(types), list(types), list(types.values())),
            )
            return {row[0] for row in result}
        # Parameters given apart from the statement: its compiled form is cached
        # and SQLAlchemy batches the rows; `.values(rows)` compiled anew every time.
        table = self._tables.inbox
        statement = _insert(connection, table).on_conflict_do_nothing().returning(table.c.event_id)
        rows = [
            {"subscription": self.name, "event_id": event_id, "event_type": event_type}
            for event_id, event_type in types.items()
        ]
        return {row[0] for row in connection.execute(statement, rows)}

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
            return self._dead_letter(message, reason=error.reason, error=error.detail, attempts=1)
        handler = entry[1]
        try:
            applied = run_with_conflict_retry(lambda: self._apply(event, handler))
        except Exception as error:
            return self._failed(message, event, error)
        message.ack()
        return Outcome.APPLIED if applied else Outcome.DUPLICATE

    def _apply(self, event: ReceivedEvent[Any], handler: Handler) -> bool:
        with self._engine.begin() as connection:
            fresh = _insert_ignore(
                connection,
                self._tables.inbox,
                {"subscription": self.name, "event_id": event.id, "event_type": event.type},
            )
            if not fresh:
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
        text = f"{type(error).__name__}: {error}"[:_MAX_ERROR_TEXT]
        try:
            counted = self._count_failure(event.id, text)
        except Exception:
            _log.exception("cannot count a failed attempt; event will be retried")
            message.nack()
            return Outcome.RETRY
        attempts = max(counted, event.delivery_attempt)
        if attempts >= self.options.max_attempts:
            return self._dead_letter(
                message, reason="HANDLER_FAILED", error=text, attempts=attempts, event=event
            )
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

    def _count_failure(self, event_id: str, error: str) -> int:
        table = self._tables.failures
        with self._engine.begin() as connection:
            statement = _insert(connection, table).values(
                subscription=self.name, event_id=event_id, attempts=1, last_error=error
            )
            statement = statement.on_conflict_do_update(
                index_elements=[table.c.subscription, table.c.event_id],
                set_={
                    "attempts": table.c.attempts + 1,
                    "last_error": statement.excluded.last_error,
                    "failed_at": statement.excluded.failed_at,
                },
            ).returning(table.c.attempts)
            return int(connection.execute(statement).scalar_one())

    def _dead_letter(
        self,
        message: PulledMessage,
        *,
        reason: str,
        error: str,
        attempts: int,
        event: ReceivedEvent[Any] | None = None,
    ) -> Outcome:
        attributes = dict(message.attributes)
        event_id = event.id if event else attributes.get(ce.ID, "")
        if not event_id or len(event_id) > _MAX_EVENT_ID:
            # Not our event id: key the dead letter by Pub/Sub's own message id.
            event_id = f"pubsub:{message.message_id}"
        event_type = attributes.get(ce.TYPE, "")[:200]
        try:
            if self.options.dead_letter_topic:
                self._publish_dead_letter(message, attributes, reason, error, attempts)
            with self._engine.begin() as connection:
                _insert_ignore(
                    connection,
                    self._tables.dead_letters,
                    {
                        "subscription": self.name,
                        "event_id": event_id,
                        "event_type": event_type,
                        "message_id": message.message_id,
                        "ordering_key": message.ordering_key[:200],
                        "attributes": json.dumps(attributes, sort_keys=True),
                        "data": bytes(message.data),
                        "reason": reason,
                        "error": error[:_MAX_ERROR_TEXT],
                        "attempts": attempts,
                    },
                )
                _insert_ignore(
                    connection,
                    self._tables.inbox,
                    {"subscription": self.name, "event_id": event_id, "event_type": event_type},
                )
        except Exception:
            _log.exception("cannot dead-letter an event; it will be retried", event_id=event_id)
            self._stop.wait(self.options.unavailable_pause_seconds)
            message.nack()
            return Outcome.RETRY
        _log.error(
            "event dead-lettered",
            subscription=self.name,
            event_id=event_id,
            event_type=event_type,
            reason=reason,
            attempts=attempts,
            error=error,
        )
        message.ack()
        return Outcome.DEAD_LETTERED

    def _publish_dead_letter(
        self,
        message: PulledMessage,
        attributes: dict[str, str],
        reason: str,
        error: str,
        attempts: int,
    ) -> None:
        assert self._publisher is not None
        assert self.options.dead_letter_topic is not None
        copy = {
            **attributes,
            DEAD_LETTER_REASON: reason,
            DEAD_LETTER_ERROR: error.encode()[:_MAX_ATTRIBUTE].decode(errors="ignore"),
            DEAD_LETTER_ATTEMPTS: str(attempts),
            DEAD_LETTER_SUBSCRIPTION: self.subscription,
            DEAD_LETTER_MESSAGE_ID: message.message_id,
        }
        self._publisher.publish(
            topic=self.options.dead_letter_topic,
            messages=[
                PubsubMessage(
                    data=bytes(message.data), attributes=copy, ordering_key=message.ordering_key
                )
            ],
            timeout=30,
        )

    # --- streaming pull ---

    def start(self) -> None:
        """Open the streaming pull; it is reopened if it fails, until ``stop``."""
        if self._client is None:
            self._client = subscriber_client()
        self._supervisor = threading.Thread(
            target=self._supervise, name=f"subscriber-{self.name}", daemon=True
        )
        self._open()
        self._supervisor.start()

    def _open(self) -> None:
        assert self._client is not None
        if not self._workers:
            self._workers = [
                threading.Thread(target=self._work, name=f"sub-{self.name}-{i}", daemon=True)
                for i in range(self.options.workers)
            ]
            for worker in self._workers:
                worker.start()
        # The library's own thread queues each message; our workers apply them.
        self._future = self._client.subscribe(
            self.subscription,
            callback=self._queue.put,
            flow_control=pubsub_v1.types.FlowControl(
                max_messages=self.options.max_outstanding_messages
            ),
            scheduler=QueueingScheduler(),
        )

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = drain(self._queue, first, self.options.batch_size)
            try:
                self.handle_batch(batch)
            except Exception:
                _log.exception("subscriber worker failed; messages will be redelivered")
                for message in batch:
                    with contextlib.suppress(Exception):
                        message.nack()
            if stop:
                return

    def _supervise(self) -> None:
        while not self._stop.is_set():
            future = self._future
            try:
                future.result()
            except Exception as error:
                if self._stop.is_set():
                    return
                _log.warning(
                    "streaming pull ended; resubscribing",
                    subscription=self.subscription,
                    error=f"{type(error).__name__}: {error}",
                )
            if self._stop.wait(self.options.resubscribe_seconds):
                return
            try:
                self._open()
            except Exception:
                _log.exception("cannot reopen the streaming pull", subscription=self.subscription)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        future = self._future
        if future is not None:
            future.cancel()
            with contextlib.suppress(Exception):
                future.result(timeout=timeout)
        if self._supervisor is not None:
            self._supervisor.join(timeout=timeout)
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join(timeout=timeout)
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
