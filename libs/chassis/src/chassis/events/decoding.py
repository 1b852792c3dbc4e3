"""Event message classes by ``ce-type`` (the proto's full name).

Every contract's ``events_pb2`` module registers its messages in protobuf's
default descriptor pool when imported; ``import_contract_events`` imports all
of them, so tools can decode any context's events without a list to maintain.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message


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
