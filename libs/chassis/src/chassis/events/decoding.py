"""A Pub/Sub message as an event: its class by ``ce-type``, its CloudEvents context, its data.

Event message classes are found by ``ce-type`` (the proto's full name). Every
contract's ``events_pb2`` module registers its messages in protobuf's default
descriptor pool when imported; ``import_contract_events`` imports all of them,
so tools can decode any context's events without a list to maintain.

A message that cannot become an event raises ``UndecodableEvent`` with a
stable reason: a subscriber dead-letters it at once, since trying again cannot
help it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Generic, Protocol, TypeVar

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from chassis.events import cloudevents as ce
from chassis.events.schema import MAX_EVENT_ID

M = TypeVar("M", bound=Message)


class UndecodableEvent(Exception):
    """The message cannot become an event: its reason says why (dead-letter it, never retry)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@cache
def import_contract_events() -> tuple[str, ...]:
    """Import ``astra.<context>.v<N>.events_pb2`` of every installed contract; their names."""
    import astra

    imported = []
    for context in pkgutil.iter_modules(astra.__path__):
        if not context.ispkg:
            continue
        package = importlib.import_module(f"astra.{context.name}")
        for version in pkgutil.iter_modules(package.__path__):
            name = f"astra.{context.name}.{version.name}.events_pb2"
            try:
                importlib.import_module(name)
            except ModuleNotFoundError:
                continue
            imported.append(name)
    return tuple(imported)


def message_class(event_type: str) -> type[Message]:
    """The class of ``event_type`` from the default pool; UNKNOWN_EVENT_TYPE if none."""
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(event_type)
    except KeyError:
        raise UndecodableEvent("UNKNOWN_EVENT_TYPE", f"no message type {event_type!r}") from None
    return message_factory.GetMessageClass(descriptor)


def decode(event_type: str, data: bytes) -> Message:
    cls = message_class(event_type)
    message = cls()
    try:
        message.ParseFromString(data)
    except DecodeError as error:
        raise UndecodableEvent("UNDECODABLE_DATA", f"{event_type}: {error}") from error
    return message


class PulledMessage(Protocol):
    """What a subscriber uses of a received message (the client library's ``Message``)."""

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


def decode_event(message: PulledMessage, cls: type[M]) -> ReceivedEvent[M]:
    """The event in ``message`` as ``cls``, or UndecodableEvent saying why not."""
    attributes = message.attributes
    missing = [name for name in ce.REQUIRED if not attributes.get(name)]
    if missing:
        raise UndecodableEvent("MISSING_ATTRIBUTE", f"missing {', '.join(missing)}")
    event_id = attributes[ce.ID]
    if len(event_id) > MAX_EVENT_ID:
        raise UndecodableEvent("INVALID_ATTRIBUTE", f"{ce.ID} longer than {MAX_EVENT_ID}")
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
