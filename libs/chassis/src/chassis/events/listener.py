"""Wakes the relay when a transaction that wrote outbox rows commits (PostgreSQL LISTEN).

The writer calls ``pg_notify`` inside the business transaction; PostgreSQL
delivers it only at commit, so a wake-up always finds the rows visible. The
listener runs on its own connection in its own thread; if that connection
drops it reconnects, and wakes the relay once to catch up on anything it may
have missed meanwhile (the relay's fallback poll covers the gap as well).
"""

from __future__ import annotations

import contextlib
import threading

import psycopg
import structlog
from psycopg import sql
from sqlalchemy.engine import make_url
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_when_event_set,
    wait_random_exponential,
)

_log = structlog.get_logger("chassis.relay")


def psycopg_conninfo(database_url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://...``) as a libpq connection string."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class NotifyListener:
    def __init__(self, database_url: str, channel: str) -> None:
        self._conninfo = psycopg_conninfo(database_url)
        self._channel = channel
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-listener", daemon=True)
        self.listening = threading.Event()

    def start(self, wake: threading.Event, stop: threading.Event) -> None:
        """Set ``wake`` on every NOTIFY (and on each reconnect) until ``stop`` is set."""
        self._wake = wake
        self._stop = stop
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        retrying = Retrying(
            retry=retry_if_exception_type(psycopg.Error),
            wait=wait_random_exponential(multiplier=0.2, max=5.0),
            stop=stop_when_event_set(self._stop),
            sleep=self._sleep,
            before_sleep=self._log_retry,
        )
        with contextlib.suppress(RetryError, psycopg.Error):
            retrying(self._listen)

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _listen(self) -> None:
        with psycopg.connect(
            self._conninfo, autocommit=True, application_name="astra-relay-listen"
        ) as connection:
            connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            self.listening.set()
            self._wake.set()
            try:
                while not self._stop.is_set():
                    # Returns after the timeout so that stop is noticed.
                    for _notify in connection.notifies(timeout=0.5):
                        self._wake.set()
            finally:
                self.listening.clear()

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        _log.warning(
            "notify listener lost its connection",
            error=str(error),
            retry_in=round(state.upcoming_sleep, 3),
        )
