"""The relay: publishes a context's outbox rows to its Pub/Sub topic, at least once, in order.

The relay reads the unpublished rows of the lanes it owns (see
``chassis.events.leases``) that have no publish in flight, sends them with the
low-level ``publish`` call (up to 1,000 messages per request, several requests
at once but never two for the same lane), and marks exactly the rows of the
requests Pub/Sub answered with message ids; a lane is read again only after
its request was marked. Lanes are pipelined: a new commit in an idle lane goes
out at once, without waiting for a slow request of another lane. Rows are
found by ``published_at IS NULL``, never by an id high-water mark, so a
transaction that took its ids early and committed late is still picked up.

Each lane is published under one ordering key (``lane-NN``): Pub/Sub keeps a
key's messages in publish order, and a lane's requests go one after another,
so each aggregate's events (all in one lane) arrive in order while a topic
never has more than ``OUTBOX_LANES`` keys.

The relay wakes on the writer's NOTIFY (PostgreSQL), with a short fallback
poll. Whatever fails (Pub/Sub unavailable, the topic gone after an emulator
restart, the database) is retried with exponential backoff and full jitter;
rows stay unpublished meanwhile, so nothing is lost or reordered. A crash
between a publish and its mark republishes those rows: duplicates, which
subscribers absorb through their inbox.

Where the relay may create its topic (development), it creates the
subscriptions consumers need (``RELAY_SUBSCRIPTIONS``) with it, before its
first publish and again when the topic turns out gone (an emulator restarted
empty): an event published before its consumers' subscriptions exist is never
delivered to them. In production Terraform creates both.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from google.api_core import exceptions as gexc
from google.protobuf.message import Message
from google.pubsub_v1 import PublisherClient as PublisherApi
from google.pubsub_v1 import PublishRequest, PubsubMessage
from sqlalchemy import (
    Connection,
    Engine,
    MetaData,
    Table,
    bindparam,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_when_event_set,
    wait_random_exponential,
)

from chassis.db.engine import create_db_engine, is_postgres
from chassis.events import cloudevents
from chassis.events.clients import provision, publisher_api, subscription_path, topic_path
from chassis.events.leases import AdvisoryLaneLeases, FileLaneLeases, LaneLeases
from chassis.events.listener import NotifyListener
from chassis.events.relay_settings import RelaySettings
from chassis.events.schema import ordering_key_of_lane, outbox_table
from chassis.events.writer import notify_channel
from chassis.kernel.clock import utc
from chassis.metrics import OUTBOX_PUBLISHED, OUTBOX_RELAY_FAILURES

_log = structlog.get_logger("chassis.relay")

# Pub/Sub refuses requests over 10 MB; leave room for framing.
MAX_REQUEST_BYTES = 9_000_000
_PURGE_CHUNK = 5000
_SQLITE_MARK_CHUNK = 500


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    event_id: str
    event_type: str
    aggregate_id: str
    lane: int
    payload: bytes
    headers: str | None
    occurred_at: datetime

    def approximate_size(self) -> int:
        # Data, subject, key and the CloudEvents attributes (about 250 bytes with names).
        return len(self.payload) + len(self.aggregate_id) + len(self.headers or "") + 320


@dataclass(frozen=True, slots=True)
class OutboxLag:
    """How far behind the relay is: unpublished rows and the age of the oldest one."""

    backlog: int
    oldest_age_seconds: float
    measured_at: datetime


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


_COLUMNS = "id, event_id, event_type, ordering_key, lane, payload, headers, occurred_at"


class Relay:
    def __init__(
        self,
        settings: RelaySettings,
        *,
        project: str,
        create_topic: bool = True,
        engine: Engine | None = None,
        publisher: PublisherApi | None = None,
        on_lag: Callable[[OutboxLag], None] | None = None,
    ) -> None:
        self.settings = settings
        self.topic = topic_path(project, settings.topic_id)
        self.subscriptions = [subscription_path(project, s) for s in settings.subscription_ids]
        self.source = settings.event_source
        self._create_topic = create_topic
        self._owns_engine = engine is None
        self._engine = engine or create_db_engine(
            settings.database_url, pool_size=2, application_name=f"astra-relay-{settings.context}"
        )
        self._postgres = is_postgres(self._engine)
        self._table: Table = outbox_table(MetaData())
        # Made on first use: measuring lag needs no Pub/Sub (nor credentials).
        self._publisher_client = publisher
        self._on_lag = on_lag
        self._leases: LaneLeases = (
            AdvisoryLaneLeases(settings.context)
            if self._postgres
            else FileLaneLeases(settings.database_url)
        )
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._executor = ThreadPoolExecutor(
            max_workers=settings.publish_concurrency, thread_name_prefix="relay-publish"
        )
        self._connection: Connection | None = None
        # Requests in flight and the lanes they hold; touched by the run loop only.
        self._in_flight: dict[Future[None], list[OutboxRow]] = {}
        self._busy_lanes: set[int] = set()
        self._next_rebalance = 0.0
        self._topic_ready = not create_topic
        self._lag: OutboxLag | None = None
        self.published_total = 0
        self.rounds = 0
        self.started = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener: NotifyListener | None = None
        self._fetch_lanes_sql = text(
            f"SELECT l.lane FROM unnest(CAST(:lanes AS smallint[])) AS l(lane) WHERE EXISTS "
            f"(SELECT 1 FROM {self._table.name} o WHERE o.lane = l.lane "
            "AND o.published_at IS NULL)"
        )
        self._fetch_rows_sql = text(
            f"SELECT o.* FROM unnest(CAST(:lanes AS smallint[])) AS l(lane) CROSS JOIN LATERAL "
            f"(SELECT {_COLUMNS} FROM {self._table.name} WHERE lane = l.lane "
            "AND published_at IS NULL ORDER BY id LIMIT :per_lane) AS o"
        )
        self._mark_sql = text(
            f"UPDATE {self._table.name} SET published_at = now() WHERE id = ANY(:ids)"
        )

    @property
    def _publisher(self) -> PublisherApi:
        if self._publisher_client is None:
            self._publisher_client = publisher_api()
        return self._publisher_client

    # --- lifecycle ---

    def run(self) -> None:
        """Publish until ``stop()``; returns once the requests in flight are marked."""
        if self._postgres:
            self._listener = NotifyListener(
                self.settings.database_url,
                notify_channel(self.settings.context),
                self._wake,
                self._stop,
            )
            self._listener.start()
        housekeeping = threading.Thread(
            target=self._housekeeping, name="relay-housekeeping", daemon=True
        )
        housekeeping.start()
        self._threads.append(housekeeping)
        retrying = Retrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_random_exponential(multiplier=0.05, max=self.settings.backoff_max_seconds),
            stop=stop_when_event_set(self._stop),
            sleep=self._interruptible_sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        _log.info(
            "relay started",
            context=self.settings.context,
            topic=self.topic,
            database="postgresql" if self._postgres else "sqlite",
        )
        # Made now, before the publishing threads share it.
        self._publisher_client = self._publisher
        self.started.set()
        try:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    more = retrying(self.run_once)
                except Exception:
                    if self._stop.is_set():
                        break
                    raise
                if not more:
                    # Woken by a commit (NOTIFY), a finished request, or the fallback poll.
                    self._wake.wait(self.settings.poll_seconds)
        finally:
            self._shutdown()

    def _interruptible_sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def owned_lanes(self) -> frozenset[int]:
        return self._leases.owned

    @property
    def lag(self) -> OutboxLag | None:
        """The last measured lag (every ``lag_interval_seconds``), for a metrics exporter."""
        return self._lag

    def _shutdown(self) -> None:
        try:
            self._settle_in_flight()
        except Exception:
            _log.warning("could not mark the last requests; their rows will be sent again")
        for thread in self._threads:
            thread.join(timeout=10)
        if self._listener is not None:
            self._listener.join(timeout=5)
        self._leases.release(self._connection)
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._executor.shutdown(wait=True)
        if self._owns_engine:
            self._engine.dispose()
        _log.info("relay stopped", published=self.published_total)

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, PublishFailed):
            error = error.first
        OUTBOX_RELAY_FAILURES.labels(self.settings.context).inc()
        _log.warning(
            "relay round failed; backing off",
            attempt=state.attempt_number,
            retry_in=round(state.upcoming_sleep, 3),
            error=f"{type(error).__name__}: {error}",
        )

    # --- one step of the pipeline ---

    def run_once(self) -> bool:
        """Mark finished requests, then send the idle lanes' rows; True when more rows wait."""
        try:
            self._collect(wait=False)
            return self._dispatch()
        except DBAPIError:
            self._drop_connection()
            raise

    def _connect(self) -> Connection:
        if self._connection is None:
            connection = self._engine.connect()
            if self._postgres:
                # Every statement the relay sends stands alone (lane locks are the
                # session's, a mark is one UPDATE): no BEGIN and COMMIT round trips
                # around each read and each mark.
                connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            self._connection = connection
            self._next_rebalance = 0.0
        return self._connection

    def _drop_connection(self) -> None:
        # Closing the session frees its advisory locks on the server; another relay may
        # take those lanes, so they are not ours anymore. Requests still in flight are
        # let finish and forgotten: their rows stay unpublished and go out again.
        for future in list(self._in_flight):
            with contextlib.suppress(Exception):
                future.result()
        self._in_flight.clear()
        self._busy_lanes.clear()
        self._leases.forget()
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.invalidate()
                connection.close()
            except Exception:
                _log.debug("closing a broken connection failed", exc_info=True)

    def _settle_in_flight(self) -> None:
        if self._in_flight:
            self._collect(wait=True)

    def _collect(self, *, wait: bool) -> None:
        """Mark the rows of every finished request (all of them when ``wait``); free their lanes.

        Raises PublishFailed after marking when any request failed, so the run loop
        backs off before the failed lanes are read and sent again.
        """
        if wait:
            futures.wait(list(self._in_flight))
        done = [f for f in self._in_flight if f.done()]
        if not done:
            return
        published: list[int] = []
        errors: list[BaseException] = []
        for future in done:
            batch = self._in_flight[future]
            error = future.exception()
            if error is None:
                published.extend(row.id for row in batch)
            else:
                errors.append(error)
        if published:
            self._mark(self._connect(), published)
            self.published_total += len(published)
            OUTBOX_PUBLISHED.labels(self.settings.context).inc(len(published))
        # Lanes are freed only now that their rows are marked, so none is read twice.
        for future in done:
            self._busy_lanes.difference_update(row.lane for row in self._in_flight.pop(future))
        if errors:
            if self._create_topic and any(isinstance(e, gexc.NotFound) for e in errors):
                self._topic_ready = False  # e.g. an emulator that restarted empty
            raise PublishFailed(len(errors), len(done), errors[0])

    def _dispatch(self) -> bool:
        connection = self._connect()
        now = time.monotonic()
        if now >= self._next_rebalance:
            self._leases.rebalance(connection, keep=frozenset(self._busy_lanes))
            self._next_rebalance = now + self.settings.rebalance_seconds
        slots = self.settings.publish_concurrency - len(self._in_flight)
        lanes = sorted(self._leases.owned - self._busy_lanes)
        if slots <= 0 or not lanes:
            return False
        if not self._topic_ready:
            self._provision()
            self._topic_ready = True
        rows, full = self._fetch(connection, lanes)
        if not rows:
            return False
        requests, cut = pack_requests(rows, self.settings.batch_size)
        for batch in requests[:slots]:
            future = self._executor.submit(self._publish, batch)
            self._in_flight[future] = batch
            self._busy_lanes.update(row.lane for row in batch)
            future.add_done_callback(self._on_done)
        self.rounds += 1
        return full or cut or len(requests) > slots

    def _provision(self) -> None:
        """The topic and the subscriptions consumers need, before anything is published."""
        for path in provision(self._publisher, self.topic, self.subscriptions):
            _log.info("created", path=path, topic=self.topic)

    def _on_done(self, _future: Future[None]) -> None:
        self._wake.set()

    def _fetch(self, connection: Connection, lanes: list[int]) -> tuple[list[OutboxRow], bool]:
        limit = self.settings.max_rows_per_round
        if self._postgres:
            active = [
                int(lane)
                for lane in connection.execute(self._fetch_lanes_sql, {"lanes": lanes}).scalars()
            ]
            if not active:
                connection.commit()
                return [], False
            per_lane = max(1, min(self.settings.batch_size, limit // len(active)))
            result = connection.execute(
                self._fetch_rows_sql, {"lanes": active, "per_lane": per_lane}
            )
            rows = [OutboxRow(*r) for r in result]
            connection.commit()
            counts: dict[int, int] = {}
            for row in rows:
                counts[row.lane] = counts.get(row.lane, 0) + 1
            return rows, any(n >= per_lane for n in counts.values())
        # SQLite: one relay owns every lane; a prefix in id order of the idle lanes' rows
        # is a prefix of each of those lanes.
        t = self._table
        statement = (
            select(
                t.c.id,
                t.c.event_id,
                t.c.event_type,
                t.c.ordering_key,
                t.c.lane,
                t.c.payload,
                t.c.headers,
                t.c.occurred_at,
            )
            .where(t.c.published_at.is_(None), t.c.lane.in_(lanes))
            .order_by(t.c.id)
            .limit(limit)
        )
        rows = [OutboxRow(*r) for r in connection.execute(statement)]
        connection.commit()
        return rows, len(rows) >= limit

    def _publish(self, rows: list[OutboxRow]) -> None:
        messages = [to_pubsub_message(row, self.source) for row in rows]
        request = PublishRequest.wrap(_RAW_PUBLISH_REQUEST(topic=self.topic, messages=messages))
        response = self._publisher.publish(
            request=request,
            retry=None,  # retries are the relay's, with the rows still unpublished
            timeout=self.settings.publish_timeout_seconds,
        )
        if len(response.message_ids) != len(messages):
            raise RuntimeError(
                f"Pub/Sub acknowledged {len(response.message_ids)} of {len(messages)} messages"
            )

    def _mark(self, connection: Connection, ids: list[int]) -> None:
        if self._postgres:
            connection.execute(self._mark_sql, {"ids": ids})
        else:
            t = self._table
            statement = (
                update(t)
                .where(t.c.id.in_(bindparam("ids", expanding=True)))
                .values(published_at=func.now())
            )
            for start in range(0, len(ids), _SQLITE_MARK_CHUNK):
                connection.execute(statement, {"ids": ids[start : start + _SQLITE_MARK_CHUNK]})
        connection.commit()

    # --- lag and purge ---

    def measure_lag(self) -> OutboxLag:
        t = self._table
        with self._engine.connect() as connection:
            count, oldest, now = connection.execute(
                select(func.count(), func.min(t.c.created_at), func.now()).where(
                    t.c.published_at.is_(None)
                )
            ).one()
        measured = utc(now) if now is not None else datetime.now(UTC)
        age = max(0.0, (measured - utc(oldest)).total_seconds()) if oldest is not None else 0.0
        return OutboxLag(backlog=int(count), oldest_age_seconds=age, measured_at=measured)

    def purge(self) -> int:
        """Delete rows published more than ``retention_seconds`` ago; how many went."""
        t = self._table
        cutoff = datetime.now(UTC) - timedelta(seconds=self.settings.retention_seconds)
        doomed = (
            select(t.c.id)
            .where(t.c.published_at.is_not(None), t.c.published_at < cutoff)
            .limit(_PURGE_CHUNK)
        )
        total = 0
        while True:
            with self._engine.begin() as connection:
                deleted = connection.execute(delete(t).where(t.c.id.in_(doomed))).rowcount
            total += deleted
            if deleted < _PURGE_CHUNK:
                return total

    def _housekeeping(self) -> None:
        next_purge = time.monotonic() + self.settings.purge_interval_seconds
        while not self._stop.wait(self.settings.lag_interval_seconds):
            try:
                lag = self.measure_lag()
                self._lag = lag
                if self._on_lag is not None:
                    self._on_lag(lag)
                _log.info(
                    "outbox lag",
                    backlog=lag.backlog,
                    oldest_age_seconds=round(lag.oldest_age_seconds, 3),
                    published_total=self.published_total,
                    lanes=len(self._leases.owned),
                )
                if time.monotonic() >= next_purge:
                    next_purge = time.monotonic() + self.settings.purge_interval_seconds
                    purged = self.purge()
                    if purged:
                        _log.info("published outbox rows purged", rows=purged)
            except Exception:
                _log.exception("outbox housekeeping failed; will try again")


def describe(lag: OutboxLag) -> dict[str, Any]:
    return {
        "backlog": lag.backlog,
        "oldest_age_seconds": round(lag.oldest_age_seconds, 3),
        "measured_at": cloudevents.format_time(lag.measured_at),
    }
