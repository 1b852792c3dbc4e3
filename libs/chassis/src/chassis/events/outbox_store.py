"""The relay's side of the outbox table: unpublished rows by lane, marks, lag and purge.

Rows are found by ``published_at IS NULL``, never by an id high-water mark, so
a transaction that took its ids early and committed late is still picked up.
On PostgreSQL each lane's rows are read with one lateral join (every lane at
most ``per_lane`` rows, in id order); on SQLite one relay owns every lane and a
prefix in id order is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

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

from chassis.db.engine import is_postgres
from chassis.events import cloudevents
from chassis.events.schema import outbox_table
from chassis.kernel.clock import utc

_PURGE_CHUNK = 5000
_SQLITE_MARK_CHUNK = 500
_COLUMNS = "id, event_id, event_type, ordering_key, lane, payload, headers, occurred_at"


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


def describe(lag: OutboxLag) -> dict[str, Any]:
    return {
        "backlog": lag.backlog,
        "oldest_age_seconds": round(lag.oldest_age_seconds, 3),
        "measured_at": cloudevents.format_time(lag.measured_at),
    }


class OutboxStore:
    """One context's outbox table as the relay reads and marks it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.postgres = is_postgres(engine)
        self._table: Table = outbox_table(MetaData())
        name = self._table.name
        self._fetch_lanes_sql = text(
            f"SELECT l.lane FROM unnest(CAST(:lanes AS smallint[])) AS l(lane) WHERE EXISTS "
            f"(SELECT 1 FROM {name} o WHERE o.lane = l.lane AND o.published_at IS NULL)"
        )
        self._fetch_rows_sql = text(
            f"SELECT o.* FROM unnest(CAST(:lanes AS smallint[])) AS l(lane) CROSS JOIN LATERAL "
            f"(SELECT {_COLUMNS} FROM {name} WHERE lane = l.lane "
            "AND published_at IS NULL ORDER BY id LIMIT :per_lane) AS o"
        )
        self._mark_sql = text(f"UPDATE {name} SET published_at = now() WHERE id = ANY(:ids)")

    def connect(self) -> Connection:
        """The relay's own connection (its session holds the lane leases on PostgreSQL)."""
        connection = self.engine.connect()
        if self.postgres:
            # Every statement the relay sends stands alone (lane locks are the
            # session's, a mark is one UPDATE): no BEGIN and COMMIT round trips
            # around each read and each mark.
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        return connection

    def fetch(
        self, connection: Connection, lanes: list[int], *, limit: int, per_lane_max: int
    ) -> tuple[list[OutboxRow], bool]:
        """Unpublished rows of ``lanes``, each lane's in id order; True when more may wait."""
        if self.postgres:
            active = [
                int(lane)
                for lane in connection.execute(self._fetch_lanes_sql, {"lanes": lanes}).scalars()
            ]
            if not active:
                connection.commit()
                return [], False
            per_lane = max(1, min(per_lane_max, limit // len(active)))
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

    def mark(self, connection: Connection, ids: list[int]) -> None:
        """Mark the rows published (Pub/Sub acknowledged them)."""
        if self.postgres:
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

    def measure_lag(self) -> OutboxLag:
        t = self._table
        with self.engine.connect() as connection:
            count, oldest, now = connection.execute(
                select(func.count(), func.min(t.c.created_at), func.now()).where(
                    t.c.published_at.is_(None)
                )
            ).one()
        measured = utc(now) if now is not None else datetime.now(UTC)
        age = max(0.0, (measured - utc(oldest)).total_seconds()) if oldest is not None else 0.0
        return OutboxLag(backlog=int(count), oldest_age_seconds=age, measured_at=measured)

    def purge(self, retention_seconds: float) -> int:
        """Delete rows published more than ``retention_seconds`` ago; how many went."""
        t = self._table
        cutoff = datetime.now(UTC) - timedelta(seconds=retention_seconds)
        doomed = (
            select(t.c.id)
            .where(t.c.published_at.is_not(None), t.c.published_at < cutoff)
            .limit(_PURGE_CHUNK)
        )
        total = 0
        while True:
            with self.engine.begin() as connection:
                deleted = connection.execute(delete(t).where(t.c.id.in_(doomed))).rowcount
            total += deleted
            if deleted < _PURGE_CHUNK:
                return total
