"""The unit of work as a service layer sees it: one business transaction and its events.

Pure Python. Each service layer declares its own abstract unit of work on this
base, naming its repositories as ports; its use cases depend on nothing else.
Adapters give the concrete one (``chassis.db.uow`` for SQLAlchemy), tests and
simulations an in-memory one.

Events are collected one way: aggregates record their own events and hand them
out with ``take_events``; a repository remembers every aggregate it handed out
or was given (``TracksAggregates.track``); at commit the unit of work takes the
events of everything its repositories saw, in the order they were seen, and the
concrete commit writes them in the same transaction as the state change (the
outbox). A use case never has to remember to record an event.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from chassis.kernel.errors import RetryTransaction

_log = logging.getLogger("chassis.uow")


class EventSource(Protocol):
    """An aggregate (or a repository of them) that records domain events."""

    def take_events(self) -> list[Any]:
        """The events recorded since the last call, oldest first; they are forgotten."""
        ...


A = TypeVar("A", bound=EventSource)


class TracksAggregates:
    """Base of repositories: remembers the aggregates that passed through, for their events."""

    def __init__(self) -> None:
        # Insertion-ordered by identity: aggregates need not be hashable.
        self._seen: dict[int, EventSource] = {}

    def track(self, aggregate: A) -> A:
        self._seen.setdefault(id(aggregate), aggregate)
        return aggregate

    def take_events(self) -> list[Any]:
        return [event for aggregate in self._seen.values() for event in aggregate.take_events()]


class UnitOfWork(abc.ABC):
    """One business transaction: ``with uow: ...; uow.commit()``; leaving without commit rolls
    back. ``on_commit`` sees the events of every commit (metrics, waking workers)."""

    def __init__(self, on_commit: Callable[[Sequence[Any]], None] | None = None) -> None:
        self._on_commit = on_commit
        self.committed_events: list[Any] = []

    def __enter__(self) -> Self:
        self._begin()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.rollback()

    @abc.abstractmethod
    def repositories(self) -> Iterable[EventSource]:
        """This unit of work's repositories, whose aggregates' events it collects."""

    def collect_events(self) -> list[Any]:
        return [event for repository in self.repositories() for event in repository.take_events()]

    def commit(self) -> None:
        events = self.collect_events()
        self._commit(events)
        self.committed_events.extend(events)
        if self._on_commit is not None and events:
            self._on_commit(events)

    @abc.abstractmethod
    def _begin(self) -> None:
        """Start the transaction and open the repositories on it."""

    @abc.abstractmethod
    def _commit(self, events: Sequence[Any]) -> None:
        """Make the state change and ``events`` durable together, or raise."""

    @abc.abstractmethod
    def rollback(self) -> None:
        """Undo whatever was not committed; a no-op after a commit."""

    def is_conflict(self, error: BaseException) -> bool:
        """True when ``error`` means the transaction lost a race and should run again."""
        return isinstance(error, RetryTransaction)


U = TypeVar("U", bound=UnitOfWork)
T = TypeVar("T")


class _LostRace(Exception):
    def __init__(self, error: BaseException) -> None:
        super().__init__(repr(error))
        self.error = error


def retry_lost_races(
    fn: Callable[[], T], is_conflict: Callable[[BaseException], bool], *, attempts: int = 10
) -> T:
    """Run ``fn`` (one whole transaction) again, with jittered backoff, while it raises an
    error ``is_conflict`` calls a lost race; once ``attempts`` are spent that error is raised."""

    def attempt() -> T:
        try:
            return fn()
        except Exception as error:
            if is_conflict(error):
                raise _LostRace(error) from error
            raise

    return _retry_lost(attempt, attempts)


def run_in_transaction(
    uow_factory: Callable[[], U], work: Callable[[U], T], *, attempts: int = 10
) -> T:
    """Run ``work`` in a fresh unit of work and commit; start over when the unit of work says
    the transaction lost a race (``UnitOfWork.is_conflict``)."""

    def attempt() -> T:
        with uow_factory() as uow:
            try:
                result = work(uow)
                uow.commit()
            except Exception as error:
                if uow.is_conflict(error):
                    raise _LostRace(error) from error
                raise
            return result

    return _retry_lost(attempt, attempts)


def _retry_lost(attempt: Callable[[], T], attempts: int) -> T:
    retrying = Retrying(
        retry=retry_if_exception_type(_LostRace),
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=0.002, max=0.25),
        before_sleep=_log_retry,
        reraise=True,
    )
    try:
        return retrying(attempt)
    except _LostRace as spent:
        raise spent.error from None


def _log_retry(state: Any) -> None:
    error = state.outcome.exception() if state.outcome else None
    cause = getattr(error, "error", error)
    _log.info(
        "transaction conflict, retrying (attempt %d, %s)",
        state.attempt_number,
        type(getattr(cause, "orig", cause)).__name__,
    )
