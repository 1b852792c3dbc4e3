"""The dead-letter path: where a subscription puts the messages it gave up on.

A dead letter is a ``dead_letters`` row (the original data and attributes, the
reason, the last error and the attempts) written with the event's inbox row in
one transaction, so a redelivery is not dead-lettered twice; and, when the
subscription has a dead-letter topic, a copy of the message published there
first, its attributes extended with why it was given up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from google.pubsub_v1 import PublisherClient as PublisherApi
from google.pubsub_v1 import PubsubMessage
from sqlalchemy import Engine

from chassis.events import cloudevents as ce
from chassis.events.decoding import PulledMessage, ReceivedEvent
from chassis.events.inbox import Inbox, insert_ignore
from chassis.events.schema import MAX_ERROR_TEXT, MAX_EVENT_ID, SubscriberTables

DEAD_LETTER_REASON = "astra-dead-letter-reason"
DEAD_LETTER_ERROR = "astra-dead-letter-error"
DEAD_LETTER_ATTEMPTS = "astra-dead-letter-attempts"
DEAD_LETTER_SUBSCRIPTION = "astra-dead-letter-subscription"
DEAD_LETTER_MESSAGE_ID = "astra-dead-letter-message-id"

# Pub/Sub caps an attribute value at 1,024 bytes.
_MAX_ATTRIBUTE = 1000
_MAX_EVENT_TYPE = 200


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message given up on: its key in the inbox, why, and after how many attempts."""

    event_id: str
    event_type: str
    reason: str
    error: str
    attempts: int

    @classmethod
    def of(
        cls,
        message: PulledMessage,
        *,
        reason: str,
        error: str,
        attempts: int,
        event: ReceivedEvent[Any] | None = None,
    ) -> DeadLetter:
        event_id = event.id if event else message.attributes.get(ce.ID, "")
        if not event_id or len(event_id) > MAX_EVENT_ID:
            # Not our event id: key the dead letter by Pub/Sub's own message id.
            event_id = f"pubsub:{message.message_id}"
        return cls(
            event_id=event_id,
            event_type=message.attributes.get(ce.TYPE, "")[:_MAX_EVENT_TYPE],
            reason=reason,
            error=error,
            attempts=attempts,
        )


class DeadLetters:
    """One subscription's dead letters: the table, and the dead-letter topic if it has one."""

    def __init__(
        self,
        *,
        tables: SubscriberTables,
        inbox: Inbox,
        subscription: str,
        name: str,
        topic: str | None = None,
        publisher: PublisherApi | None = None,
    ) -> None:
        if topic and publisher is None:
            raise ValueError("a dead-letter topic needs a publisher")
        self._table = tables.dead_letters
        self._inbox = inbox
        self._subscription = subscription
        self._name = name
        self._topic = topic
        self._publisher = publisher

    def put(self, engine: Engine, message: PulledMessage, letter: DeadLetter) -> None:
        """Copy the message to the topic (if any), then store it; raises when either fails."""
        attributes = dict(message.attributes)
        if self._topic:
            self._publish(message, attributes, letter)
        with engine.begin() as connection:
            insert_ignore(
                connection,
                self._table,
                {
                    "subscription": self._name,
                    "event_id": letter.event_id,
                    "event_type": letter.event_type,
                    "message_id": message.message_id,
                    "ordering_key": message.ordering_key[:200],
                    "attributes": json.dumps(attributes, sort_keys=True),
                    "data": bytes(message.data),
                    "reason": letter.reason,
                    "error": letter.error[:MAX_ERROR_TEXT],
                    "attempts": letter.attempts,
                },
            )
            self._inbox.record(connection, letter.event_id, letter.event_type)

    def _publish(
        self, message: PulledMessage, attributes: dict[str, str], letter: DeadLetter
    ) -> None:
        assert self._publisher is not None
        assert self._topic is not None
        copy = {
            **attributes,
            DEAD_LETTER_REASON: letter.reason,
            DEAD_LETTER_ERROR: letter.error.encode()[:_MAX_ATTRIBUTE].decode(errors="ignore"),
            DEAD_LETTER_ATTEMPTS: str(letter.attempts),
            DEAD_LETTER_SUBSCRIPTION: self._subscription,
            DEAD_LETTER_MESSAGE_ID: message.message_id,
        }
        self._publisher.publish(
            topic=self._topic,
            messages=[
                PubsubMessage(
                    data=bytes(message.data), attributes=copy, ordering_key=message.ordering_key
                )
            ],
            timeout=30,
        )
