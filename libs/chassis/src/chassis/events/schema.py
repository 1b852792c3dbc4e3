"""The ``outbox`` and ``inbox`` tables every context's database has, and the outbox's lanes.

Each service adds them to its own MetaData (and so to its own migrations): the
mechanism is shared, the data is the context's own. A context that consumes
events adds the subscriber's three tables (``SubscriberTables``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    func,
    text,
)

# Rows are spread over a fixed number of lanes by a hash of their aggregate's id,
# so several relays can share the work while one aggregate's events stay in one
# lane, in order. Each lane is published under one Pub/Sub ordering key of its
# own (``ordering_key_of_lane``), so a topic never carries more than this many
# keys, however many aggregates there are. Changing it needs a migration of
# existing rows.
OUTBOX_LANES = 64

# Column limits: an event id is at most this long; error texts are cut to this.
MAX_EVENT_ID = 64
MAX_ERROR_TEXT = 2000

# An identity column on PostgreSQL; SQLite's INTEGER PRIMARY KEY is its rowid.
_ID = BigInteger().with_variant(Integer(), "sqlite")


def lane_of(aggregate_id: str) -> int:
    return zlib.crc32(aggregate_id.encode("utf-8")) % OUTBOX_LANES


def ordering_key_of_lane(lane: int) -> str:
    """The Pub/Sub ordering key of a lane's events: one key per lane, ``lane-00`` to ``lane-63``.

    What consumers need in order is one aggregate's events (a payment's
    lifecycle, a customer's KYC changes, a hold and its post or void); an
    aggregate's events all fall in one lane, so they share one key. A key per
    aggregate would buy no order anyone needs, and the emulator keeps a thread
    for every key an ordered subscription has seen.
    """
    return f"lane-{lane:02d}"


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", _ID, primary_key=True, autoincrement=True),
        Column("event_id", String(MAX_EVENT_ID), nullable=False),
        Column("event_type", String(200), nullable=False),
        # The aggregate whose events must stay in order (its id; named before the
        # published key became the lane's): it picks the lane and is published as
        # the event's ce-subject.
        Column("ordering_key", String(200), nullable=False),
        Column("lane", SmallInteger, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        # Extra message attributes (e.g. trace context), JSON object of strings.
        Column("headers", Text, nullable=True),
        Column("occurred_at", DateTime(timezone=True), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True), nullable=True),
        Index(
            "ix_outbox_unpublished",
            "lane",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
        # Only purge reads it, and only for published rows: unpublished rows (every
        # insert) stay out of it.
        Index(
            "ix_outbox_published_at",
            "published_at",
            postgresql_where=text("published_at IS NOT NULL"),
            sqlite_where=text("published_at IS NOT NULL"),
        ),
    )


def inbox_table(metadata: MetaData) -> Table:
    """Events a subscriber has applied (or dead-lettered), keyed by subscription and event id."""
    return Table(
        "inbox",
        metadata,
        Column("subscription", String(200), primary_key=True),
        Column("event_id", String(MAX_EVENT_ID), primary_key=True),
        Column("event_type", String(200), nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


def inbox_failures_table(metadata: MetaData) -> Table:
    """Failed attempts at an event, counted durably: a crash or restart does not reset them."""
    return Table(
        "inbox_failures",
        metadata,
        Column("subscription", String(200), primary_key=True),
        Column("event_id", String(MAX_EVENT_ID), primary_key=True),
        Column("attempts", Integer, nullable=False),
        Column("last_error", Text, nullable=False),
        Column("failed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


def dead_letters_table(metadata: MetaData) -> Table:
    """Messages a subscriber gave up on: the original message, why, and after how many tries."""
    return Table(
        "dead_letters",
        metadata,
        Column("subscription", String(200), primary_key=True),
        Column("event_id", String(MAX_EVENT_ID), primary_key=True),
        Column("event_type", String(200), nullable=False),
        Column("message_id", String(100), nullable=False),
        Column("ordering_key", String(200), nullable=False),
        # JSON object of the message's attributes.
        Column("attributes", Text, nullable=False),
        Column("data", LargeBinary, nullable=False),
        Column("reason", String(64), nullable=False),
        Column("error", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column(
            "dead_lettered_at", DateTime(timezone=True), nullable=False, server_default=func.now()
        ),
    )


@dataclass(frozen=True)
class SubscriberTables:
    """The subscriber's bookkeeping tables in the context's own database."""

    inbox: Table
    failures: Table
    dead_letters: Table

    @classmethod
    def define(cls, metadata: MetaData, inbox: Table | None = None) -> SubscriberTables:
        """Add the tables to ``metadata`` (reusing an ``inbox`` already defined there)."""
        return cls(
            inbox=inbox if inbox is not None else inbox_table(metadata),
            failures=inbox_failures_table(metadata),
            dead_letters=dead_letters_table(metadata),
        )
