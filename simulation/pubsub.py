"""Events: each context's outbox relayed to a simulated Pub/Sub, delivered to subscribers.

The relay maps committed domain events with the context's own adapter
(``<context>.adapters.events.to_outbox_message``) and the chassis' message
builder (``chassis.events.publishing.to_pubsub_message``: lane ordering key,
CloudEvents attributes); a row is marked published only after the publish, and
a relay that dies (or is made to forget) before marking publishes again:
duplicates. Pub/Sub keeps order per ordering key and nothing across keys: each
delivery picks a key at random and hands out that key's oldest unacknowledged
message; an acknowledgement may be lost, and the message is delivered again
(still first of its key). Subscribers decode with ``chassis.events.decoding``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chassis.events.decoding import ReceivedEvent, decode_event, message_class
from chassis.events.outbox_store import OutboxRow
from chassis.events.publishing import to_pubsub_message
from chassis.events.schema import lane_of
from chassis.events.writer import OutboxMessage

from simulation.core import Simulation


@dataclass
class _Pulled:
    """A delivered message as ``chassis.events.decoding.PulledMessage``."""

    data: bytes
    attributes: dict[str, str]
    message_id: str
    ordering_key: str
    delivery_attempt: int | None = None

    def ack(self) -> None:
        pass

    def nack(self) -> None:
        pass


Handler = Callable[[ReceivedEvent[Any]], None]


@dataclass
class Subscription:
    name: str
    process: str
    handler: Handler
    queues: dict[str, deque[_Pulled]] = field(default_factory=dict)
    deliveries: int = 0

    def backlog(self) -> int:
        return sum(len(q) for q in self.queues.values())


class PubSub:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.topics: dict[str, list[Subscription]] = {}
        self.published: dict[str, list[str]] = {}  # topic -> event ids, first publish order

    def subscribe(self, topic: str, name: str, process: str, handler: Handler) -> Subscription:
        subscription = Subscription(name, process, handler)
        self.topics.setdefault(topic, []).append(subscription)
        self.sim.every(0.2, f"deliver {name}", process, lambda: self.deliver(subscription))
        return subscription

    def publish(self, topic: str, pulled: _Pulled) -> None:
        event_id = pulled.attributes["ce-id"]
        seen = self.published.setdefault(topic, [])
        if event_id not in seen:
            seen.append(event_id)
        for subscription in self.topics.get(topic, []):
            copies = 2 if self.sim.chance(self.sim.faults.pubsub_duplicate) else 1
            for _ in range(copies):
                subscription.queues.setdefault(pulled.ordering_key, deque()).append(pulled)

    def deliver(self, subscription: Subscription, *, count: int = 5) -> None:
        sim = self.sim
        for _ in range(count):
            keys = sorted(key for key, queue in subscription.queues.items() if queue)
            if not keys:
                return
            key = sim.rng.choice(keys)
            queue = subscription.queues[key]
            message = queue[0]
            subscription.deliveries += 1
            cls = message_class(message.attributes["ce-type"])
            subscription.handler(decode_event(message, cls))
            if sim.chance(sim.faults.pubsub_redeliver):
                sim.record(f"pubsub ack lost {subscription.name} {message.attributes['ce-id']}")
                continue  # delivered again, still the first of its key
            queue.popleft()

    def drained(self) -> bool:
        return all(s.backlog() == 0 for subs in self.topics.values() for s in subs)


class Relay:
    """One context's outbox relay: publishes committed events after the durable mark."""

    def __init__(
        self,
        sim: Simulation,
        pubsub: PubSub,
        topic: str,
        source: str,
        events: Callable[[], list[Any]],
        to_message: Callable[[Any], OutboxMessage],
        mark: Callable[[], int],
        set_mark: Callable[[int], None],
        process: str,
    ) -> None:
        self.sim, self.pubsub, self.topic, self.source = sim, pubsub, topic, source
        self._events, self._to_message, self._mark, self._set_mark = (
            events,
            to_message,
            mark,
            set_mark,
        )
        sim.every(0.3, f"relay {topic}", process, self.run)

    def rows(self, start: int, stop: int) -> list[OutboxRow]:
        rows = []
        for index, event in enumerate(self._events()[start:stop], start=start + 1):
            message = self._to_message(event)
            rows.append(
                OutboxRow(
                    id=index,
                    event_id=f"{self.topic}-{index}",
                    event_type=message.event_type,
                    aggregate_id=message.aggregate_id,
                    lane=lane_of(message.aggregate_id),
                    payload=message.payload,
                    headers=None,
                    occurred_at=message.occurred_at,
                )
            )
        return rows

    def run(self) -> None:
        start = self._mark()
        rows = self.rows(start, start + 50)
        if not rows:
            return
        for row in rows:
            raw: Any = to_pubsub_message(row, self.source)
            self.pubsub.publish(
                self.topic,
                _Pulled(
                    data=bytes(raw.data),
                    attributes=dict(raw.attributes),
                    message_id=row.event_id,
                    ordering_key=raw.ordering_key,
                ),
            )
        if self.sim.chance(self.sim.faults.pubsub_duplicate):
            # Published, but the mark was not written (the relay died, or the commit failed).
            self.sim.record(f"relay {self.topic} publishes {len(rows)} again")
            return
        self._set_mark(start + len(rows))


def event_sequence(event_id: str) -> int:
    """The outbox position of an event id this simulation gave (``<topic>-<n>``)."""
    return int(event_id.rsplit("-", 1)[1])
