"""Retrying whole transactions that lost a race.

Deadlocks and serialization failures are the database telling two writers to
try again; a unique violation on a client-chosen id means another writer
inserted the same key first, and the retry will find it and replay it. None of
these should ever reach a client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import psycopg.errors
import structlog
from sqlalchemy.exc import DBAPIError, OperationalError

from chassis.kernel.errors import RetryTransaction
from chassis.kernel.uow import retry_lost_races

_log = structlog.get_logger("chassis.db")
T = TypeVar("T")

_CONFLICTS = (
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.LockNotAvailable,
    psycopg.errors.UniqueViolation,
)


def _lost_race(error: DBAPIError) -> bool:
    if isinstance(error.orig, _CONFLICTS):
        return True
    # SQLite: another writer holds the lock past busy_timeout.
    return isinstance(error, OperationalError) and "database is locked" in str(error.orig)


def is_conflict(error: BaseException) -> bool:
    """A transaction that lost a race, or whose pooled connection turned out dead: run it again.

    So is one that asked to (``RetryTransaction``): what it read changed under it.

    Set-based hot paths write through psycopg cursors directly, so their errors
    arrive unwrapped by SQLAlchemy and count the same.
    """
    if isinstance(error, (*_CONFLICTS, RetryTransaction)):
        return True
    if not isinstance(error, DBAPIError):
        return False
    return error.connection_invalidated or _lost_race(error)


def run_with_conflict_retry(fn: Callable[[], T], *, attempts: int = 10) -> T:
    """Run ``fn`` (one whole transaction) again when it lost a race, with jittered backoff."""
    return retry_lost_races(fn, is_conflict, attempts=attempts)


# What a dropped or refused connection raises: wrapped by SQLAlchemy, or straight
# from psycopg on the raw-cursor paths. Errors that mean "lost a race" are retried
# instead (and, once retries are spent, are still worth a retry by the caller).
DATABASE_UNAVAILABLE = (OperationalError, psycopg.OperationalError)


def is_database_unavailable(error: BaseException) -> bool:
    """Connection refused or dropped: the caller should see UNAVAILABLE, not INTERNAL."""
    if isinstance(error, psycopg.OperationalError):
        return not isinstance(error, _CONFLICTS)
    return isinstance(error, OperationalError) and not _lost_race(error)
