"""The relay: publishes a context's outbox rows to its Pub/Sub topic, at least once, in order.

The relay reads the unpublished rows of the lanes it owns (see
``chassis.events.leases``) that have no publish in flight
(``chassis.events.outbox_store``), sends them with the low-level ``publish``
call (up to 1,000 messages per request, several requests at once but never two
for the same lane; ``chassis.events.publishing``), and marks exactly the rows
of the requests Pub/Sub answered with message ids; a lane is read again only
after its request was marked. Lanes are pipelined: a new commit in an idle
lane goes out at once, without waiting for a slow request of another lane.

The relay wakes on the writer's NOTIFY (PostgreSQL), with a short fallback
poll. Whatever fails (Pub/Sub unavailable, the topic gone after an emulator
restart, the database) is retried with exponential backoff and full jitter;
rows stay unpublished meanwhile, so nothing is lost or reordered. A crash
between a publish and its mark republishes those rows: duplicates, which
subscribers absorb through their inbox.

``Relay.build`` makes a relay from its settings; the constructor takes the
parts (``RelayParts``) so that they can be chosen apart from it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import structlog
from google.pubsub_v1 import PublisherClient as PublisherApi
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_when_event_set,
    wait_random_exponential,
)

from chassis.db.engine import create_db_engine
from chassis.events.clients import subscription_path, topic_path
from chassis.events.leases import AdvisoryLaneLeases, FileLaneLeases, LaneLeases
from chassis.events.listener import NotifyListener
from chassis.events.outbox_store import OutboxLag, OutboxRow, OutboxStore
from chassis.events.publishing import OutboxPublisher, PublishFailed, pack_requests
from chassis.events.relay_settings import RelaySettings
from chassis.events.writer import notify_channel
from chassis.metrics import OUTBOX_PUBLISHED, OUTBOX_RELAY_FAILURES

_log = structlog.get_logger("chassis.relay")


@dataclass(frozen=True)
class RelayParts:
    """What a relay works with: its outbox, its topic, its lane leases, its wake-up call."""

    store: OutboxStore
    publisher: OutboxPublisher
    leases: LaneLeases
    # PostgreSQL only: SQLite has no NOTIFY, the relay polls.
    listener: NotifyListener | None
    # The engine was made for the relay, so the relay disposes of it.
    owns_engine: bool

    @classmethod
    def build(
        cls,
        settings: RelaySettings,
        *,
        project: str,
        create_topic: bool = True,
        engine: Engine | None = None,
        publisher: PublisherApi | None = None,
    ) -> RelayParts:
        store = OutboxStore(
            engine
            or create_db_engine(
                settings.database_url,
                pool_size=2,
                application_name=f"astra-relay-{settings.context}",
            )
        )
        return cls(
            store=store,
            publisher=OutboxPublisher(
                topic=topic_path(project, settings.topic_id),
                subscriptions=[subscription_path(project, s) for s in settings.subscription_ids],
                source=settings.event_source,
                timeout_seconds=settings.publish_timeout_seconds,
                create_topic=create_topic,
                api=publisher,
            ),
            leases=(
                AdvisoryLaneLeases(settings.context)
                if store.postgres
                else FileLaneLeases(settings.database_url)
            ),
            listener=(
                NotifyListener(settings.database_url, notify_channel(settings.context))
                if store.postgres
                else None
            ),
            owns_engine=engine is None,
        )


class _InFlight:
    """Publish requests in flight and the lanes they hold; touched by the run loop only."""

    def __init__(self) -> None:
        self.requests: dict[Future[None], list[OutboxRow]] = {}
        self.busy_lanes: set[int] = set()

    def __len__(self) -> int:
        return len(self.requests)

    def add(self, future: Future[None], rows: list[OutboxRow]) -> None:
        self.requests[future] = rows
        self.busy_lanes.update(row.lane for row in rows)

    def release(self, future: Future[None]) -> None:
        self.busy_lanes.difference_update(row.lane for row in self.requests.pop(future))

    def abandon(self) -> None:
        """Let every request finish and forget it: its rows stay unpublished and go out again."""
        for future in list(self.requests):
            with contextlib.suppress(Exception):
                future.result()
        self.requests.clear()
        self.busy_lanes.clear()


class Relay:
    def __init__(
        self,
        settings: RelaySettings,
        parts: RelayParts,
        *,
        on_lag: Callable[[OutboxLag], None] | None = None,
    ) -> None:
        self.settings = settings
        self._parts = parts
        self._store, self._publisher, self._leases = parts.store, parts.publisher, parts.leases
        self._on_lag = on_lag
        self._stop, self._wake = threading.Event(), threading.Event()
        self._executor = ThreadPoolExecutor(
            max_workers=settings.publish_concurrency, thread_name_prefix="relay-publish"
        )
        self._connection: Connection | None = None
        self._in_flight = _InFlight()
        self._next_rebalance = 0.0
        self._lag: OutboxLag | None = None
        self._threads: list[threading.Thread] = []
        self.published_total = 0
        self.rounds = 0
        self.started = threading.Event()

    @classmethod
    def build(
        cls,
        settings: RelaySettings,
        *,
        project: str,
        create_topic: bool = True,
        engine: Engine | None = None,
        publisher: PublisherApi | None = None,
        on_lag: Callable[[OutboxLag], None] | None = None,
    ) -> Relay:
        """A relay with the parts its settings call for (``engine`` and ``publisher`` if given)."""
        parts = RelayParts.build(
            settings, project=project, create_topic=create_topic, engine=engine, publisher=publisher
        )
        return cls(settings, parts, on_lag=on_lag)

    # --- lifecycle ---

    def run(self) -> None:
        """Publish until ``stop()``; returns once the requests in flight are marked."""
        if self._parts.listener is not None:
            self._parts.listener.start(self._wake, self._stop)
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
            topic=self._publisher.topic,
            database="postgresql" if self._store.postgres else "sqlite",
        )
        # Made now, before the publishing threads share it.
        _ = self._publisher.api
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
        if self._parts.listener is not None:
            self._parts.listener.join(timeout=5)
        self._leases.release(self._connection)
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._executor.shutdown(wait=True)
        if self._parts.owns_engine:
            self._store.engine.dispose()
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
            self._connection = self._store.connect()
            self._next_rebalance = 0.0
        return self._connection

    def _drop_connection(self) -> None:
        # Closing the session frees its advisory locks on the server; another relay may
        # take those lanes, so they are not ours anymore. Requests still in flight are
        # let finish and forgotten: their rows stay unpublished and go out again.
        self._in_flight.abandon()
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
        requests = self._in_flight.requests
        if wait:
            futures.wait(list(requests))
        done = [f for f in requests if f.done()]
        if not done:
            return
        published: list[int] = []
        errors: list[BaseException] = []
        for future in done:
            error = future.exception()
            if error is None:
                published.extend(row.id for row in requests[future])
            else:
                errors.append(error)
        if published:
            self._store.mark(self._connect(), published)
            self.published_total += len(published)
            OUTBOX_PUBLISHED.labels(self.settings.context).inc(len(published))
        # Lanes are freed only now that their rows are marked, so none is read twice.
        for future in done:
            self._in_flight.release(future)
        if errors:
            self._publisher.note_failures(errors)
            raise PublishFailed(len(errors), len(done), errors[0])

    def _dispatch(self) -> bool:
        connection = self._connect()
        busy = self._in_flight.busy_lanes
        now = time.monotonic()
        if now >= self._next_rebalance:
            self._leases.rebalance(connection, keep=frozenset(busy))
            self._next_rebalance = now + self.settings.rebalance_seconds
        slots = self.settings.publish_concurrency - len(self._in_flight)
        lanes = sorted(self._leases.owned - busy)
        if slots <= 0 or not lanes:
            return False
        self._publisher.ensure_topic()
        rows, full = self._store.fetch(
            connection,
            lanes,
            limit=self.settings.max_rows_per_round,
            per_lane_max=self.settings.batch_size,
        )
        if not rows:
            return False
        requests, cut = pack_requests(rows, self.settings.batch_size)
        for batch in requests[:slots]:
            future = self._executor.submit(self._publisher.publish, batch)
            self._in_flight.add(future, batch)
            future.add_done_callback(self._on_done)
        self.rounds += 1
        return full or cut or len(requests) > slots

    def _on_done(self, _future: Future[None]) -> None:
        self._wake.set()

    # --- lag and purge ---

    def measure_lag(self) -> OutboxLag:
        return self._store.measure_lag()

    def purge(self) -> int:
        """Delete rows published more than ``retention_seconds`` ago; how many went."""
        return self._store.purge(self.settings.retention_seconds)

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
