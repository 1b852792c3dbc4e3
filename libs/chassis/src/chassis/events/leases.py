"""Which outbox lanes this relay publishes: a share of the lanes, one owner per lane.

One aggregate's events all fall in one lane (a hash of the ordering key), so a
lane with a single owner that publishes it in id order, one request at a time,
keeps every aggregate's events in order whatever the number of relays.

On PostgreSQL ownership is a session advisory lock per lane, held on the
relay's own connection: if the process dies, its connection closes and the
server frees its lanes at once, for the others to take. Each relay also holds
a membership lock, so every relay can count the live ones and keep about its
fair share (``ceil(lanes / relays)``): a newcomer gets lanes when the others
shed their surplus at their next rebalance. A lane changes hands only while
no publish for it is in flight.

On SQLite (``make run``) one relay owns every lane: an exclusive lock on a file
beside the database makes a second relay a standby rather than a rival.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
from pathlib import Path
from typing import IO, Protocol

import structlog
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from chassis.db.locks import lock, lock_class, try_lock, unlock, unlock_all
from chassis.events.schema import OUTBOX_LANES

_log = structlog.get_logger("chassis.relay")


class LaneLeases(Protocol):
    @property
    def owned(self) -> frozenset[int]: ...

    def rebalance(
        self, connection: Connection, keep: frozenset[int] = frozenset()
    ) -> frozenset[int]:
        """Take or shed lanes towards this relay's share, never shedding ``keep`` (in flight)."""
        ...

    def forget(self) -> None:
        """The connection that held the leases is gone, and the leases with it."""
        ...

    def release(self, connection: Connection | None) -> None:
        """Give every lane back (on shutdown)."""
        ...


class AdvisoryLaneLeases:
    def __init__(self, context: str, lanes: int = OUTBOX_LANES) -> None:
        self._lanes = lanes
        self._lane_class = lock_class(f"astra-outbox-lane:{context}")
        self._member_class = lock_class(f"astra-outbox-relay:{context}")
        self._owned: set[int] = set()
        self._member = False
        self.relays = 0

    @property
    def owned(self) -> frozenset[int]:
        return frozenset(self._owned)

    def rebalance(
        self, connection: Connection, keep: frozenset[int] = frozenset()
    ) -> frozenset[int]:
        if not self._member:
            # Keyed by the connection's own backend: each relay holds one member lock.
            backend = int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())
            lock(connection, (self._member_class, backend))
            self._member = True
        self.relays = int(
            connection.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND classid = CAST(CAST(:c AS integer) AS oid) AND objsubid = 2 "
                    "AND database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database())"
                ),
                {"c": self._member_class},
            ).scalar_one()
        )
        share = math.ceil(self._lanes / max(self.relays, 1))
        before = set(self._owned)
        if len(self._owned) > share:
            # A lane with a request in flight is shed at a later rebalance, once idle.
            sheddable = sorted(self._owned - keep, reverse=True)
            for lane in sheddable[: len(self._owned) - share]:
                unlock(connection, (self._lane_class, lane))
                self._owned.discard(lane)
        elif len(self._owned) < share:
            # Start the search at a different lane per relay, so newcomers rarely collide.
            start = os.getpid() % self._lanes
            for step in range(self._lanes):
                if len(self._owned) >= share:
                    break
                lane = (start + step) % self._lanes
                if lane in self._owned:
                    continue
                if try_lock(connection, (self._lane_class, lane)):
                    self._owned.add(lane)
        connection.commit()
        if self._owned != before:
            _log.info(
                "lanes rebalanced",
                relays=self.relays,
                owned=len(self._owned),
                gained=len(self._owned - before),
                shed=len(before - self._owned),
            )
        return self.owned

    def forget(self) -> None:
        self._owned.clear()
        self._member = False

    def release(self, connection: Connection | None) -> None:
        if connection is not None and (self._owned or self._member):
            with contextlib.suppress(Exception):
                unlock_all(connection)
        self.forget()


class FileLaneLeases:
    """Every lane, or none while another relay holds the file lock (SQLite)."""

    def __init__(self, database_url: str, lanes: int = OUTBOX_LANES) -> None:
        database = make_url(database_url).database
        self._path = Path(f"{database}.relay-lock") if database and database != ":memory:" else None
        self._lanes = lanes
        self._file: IO[bytes] | None = None
        self._owned: frozenset[int] = frozenset()

    @property
    def owned(self) -> frozenset[int]:
        return self._owned

    def rebalance(
        self, connection: Connection, keep: frozenset[int] = frozenset()
    ) -> frozenset[int]:
        if self._owned:
            return self._owned
        if self._path is not None:
            handle = self._path.open("ab")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                return self._owned
            self._file = handle
        self._owned = frozenset(range(self._lanes))
        _log.info("relay owns every lane", lock_file=str(self._path))
        return self._owned

    def forget(self) -> None:
        # The file lock does not depend on the database connection: keep it.
        return

    def release(self, connection: Connection | None) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._owned = frozenset()
