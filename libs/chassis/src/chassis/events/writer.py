"""Writes events to the outbox inside the caller's transaction.

On PostgreSQL the relay is woken with NOTIFY, which the server delivers only
when the transaction commits: the relay never sees a row before it is
committed, and never waits for a slow poll. Large batches go in with binary
COPY; a few events go in with one statement that also notifies (one round
trip: on the hot path of small transactions the round trips are the cost).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, insert, text

from chassis.db.arrays import int_array, text_array
from chassis.events.schema import lane_of
from chassis.tracing import sampled_trace_context

COPY_THRESHOLD = 32


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One event as it will be published: the proto's full name, its bytes, its aggregate.

    The aggregate's id picks the event's lane, and so its Pub/Sub ordering key
    (``chassis.events.schema.ordering_key_of_lane``): one aggregate's events
    arrive in order. It travels as the event's ``ce-subject``.
    """

    event_type: str
    aggregate_id: str
    payload: bytes
    occurred_at: datetime
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    headers: dict[str, str] | None = None


def with_trace_context(messages: Sequence[OutboxMessage]) -> Sequence[OutboxMessage]:
    """The events a transaction writes, each carrying the trace that caused it (if recorded)."""
    headers = sampled_trace_context()
    if not headers:
        return messages
    return [m if m.headers else dataclasses.replace(m, headers=headers) for m in messages]


def notify_channel(context: str) -> str:
    return f"astra_outbox_{context}"


_COLUMNS = "event_id, event_type, ordering_key, lane, payload, headers, occurred_at"
_COPY_TYPES = ["text", "text", "text", "int2", "bytea", "text", "timestamptz"]


class OutboxWriter:
    def __init__(self, table: Table, context: str) -> None:
        self._table = table
        self._context = context
        self._channel = notify_channel(context)
        self._copy_sql = f"COPY {table.name} ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
        self._insert_and_notify_sql = (
            f"WITH written AS (INSERT INTO {table.name} ({_COLUMNS}) "
            "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::int2[], %s::bytea[], "
            "%s::text[], %s::timestamptz[])) SELECT pg_notify(%s, '')"
        )

    def events_writer(
        self, to_message: Callable[[Any], OutboxMessage]
    ) -> Callable[[Connection, Sequence[Any]], None]:
        """What a unit of work calls at commit: its domain events, mapped to messages with
        ``to_message`` and stamped with the current trace, written in its transaction."""

        def write_events(connection: Connection, events: Sequence[Any]) -> None:
            self.write(connection, with_trace_context([to_message(e) for e in events]))

        return write_events

    def write(self, connection: Connection, messages: Sequence[OutboxMessage]) -> None:
        if not messages:
            return
        rows = [
            (
                m.event_id,
                m.event_type,
                m.aggregate_id,
                lane_of(m.aggregate_id),
                m.payload,
                json.dumps(m.headers) if m.headers else None,
                m.occurred_at,
            )
            for m in messages
        ]
        if connection.dialect.name != "postgresql":
            keys = ("event_id", "event_type", "ordering_key", "lane", "payload", "headers")
            connection.execute(
                insert(self._table),
                [{**dict(zip(keys, r[:6], strict=True)), "occurred_at": r[6]} for r in rows],
            )
            return
        raw = connection.connection.driver_connection
        assert raw is not None
        if len(rows) >= COPY_THRESHOLD:
            with raw.cursor() as cursor, cursor.copy(self._copy_sql) as copy:
                copy.set_types(_COPY_TYPES)
                for row in rows:
                    copy.write_row(row)
            connection.execute(text("SELECT pg_notify(:c, '')"), {"c": self._channel})
            return
        with raw.cursor() as cursor:
            cursor.execute(self._insert_and_notify_sql, [*_array_literals(rows), self._channel])


def _array_literals(rows: list[tuple[Any, ...]]) -> list[Any]:
    """The columns as PostgreSQL array literals where that is safe, else as lists.

    A literal is one string; a list is adapted by psycopg element by element,
    which is most of this statement's client CPU for a handful of events.
    Payloads go as hex bytea, instants as quoted ISO text; headers (JSON) are
    left to psycopg.
    """
    event_ids, types, keys, lanes, payloads, headers, instants = (
        list(column) for column in zip(*rows, strict=True)
    )
    return [
        text_array(event_ids),
        text_array(types),
        text_array(keys),
        int_array(lanes),
        "{" + ",".join(f'"\\\\x{p.hex()}"' for p in payloads) + "}",
        headers if any(headers) else "{" + ",".join("NULL" for _ in headers) + "}",
        "{" + ",".join(f'"{i.isoformat()}"' for i in instants) + "}",
    ]
