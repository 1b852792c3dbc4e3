"""Background workers: what a service runs beside its gRPC server, started and stopped as one.

A worker is anything with a ``name``, ``start()`` and ``stop(timeout)``: a loop
on a thread (``Periodic``), a subscriber, a pool of threads. ``Workers`` starts
a service's workers in order and stops them in reverse order against one
deadline, so that stopping a service takes a bounded time whatever a worker
does: a worker still stopping when its time is up is logged and left behind
(its threads are daemons; the process is on its way out).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Literal, Protocol, Self

import structlog

_log = structlog.get_logger("chassis.workers")


def seconds_left(deadline: float) -> float:
    """What is left until ``deadline`` (``time.monotonic()``), never below zero."""
    return max(0.0, deadline - time.monotonic())


class Worker(Protocol):
    @property
    def name(self) -> str: ...

    def start(self) -> object:
        """Begin the work (on threads of its own) and return; what it returns is ignored."""
        ...

    def stop(self, timeout: float) -> None:
        """End the work, within about ``timeout`` seconds."""
        ...


class Periodic:
    """Calls ``tick`` every ``interval`` seconds on a daemon thread until stopped.

    The first tick comes at once with ``at_start``, else after one interval. A
    tick that raises is logged (``failed``) and the next one runs on time: a
    database away for a while costs ticks, not the worker.
    """

    def __init__(
        self, name: str, tick: Callable[[], None], interval: float, *, at_start: bool = False
    ) -> None:
        self._name = name
        self._tick = tick
        self._interval = interval
        self._at_start = at_start
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def stopping(self) -> bool:
        """True once stop was asked: a long tick may check it to end early."""
        return self._stopping.is_set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        if not self._at_start and self._stopping.wait(self._interval):
            return
        while True:
            try:
                self._tick()
            except Exception:
                self.failed()
            if self._stopping.wait(self._interval):
                return

    def failed(self) -> None:
        """Called in the except block of a tick that raised."""
        _log.exception("background work failed; will try again", worker=self._name)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=timeout)


class Workers:
    """A service's workers: started in the order given, stopped in reverse."""

    def __init__(self, workers: Iterable[Worker] = ()) -> None:
        self._workers = list(workers)
        self._started: list[Worker] = []

    def __len__(self) -> int:
        return len(self._workers)

    def start(self) -> None:
        """Start each worker; if one fails to start, those started are stopped and it raises."""
        for worker in self._workers:
            try:
                worker.start()
            except BaseException:
                self.stop(deadline=time.monotonic() + 5.0)
                raise
            self._started.append(worker)
            _log.info("worker started", worker=worker.name)

    def stop(self, deadline: float) -> list[str]:
        """Stop the started workers, newest first, all by ``deadline`` (``time.monotonic()``).

        Each worker is asked in turn and waited for up to its share of the time
        left; one that takes longer goes on stopping while the next is asked,
        and is waited for again at the end, so that one slow worker cannot take
        the others' time. Returns the names of those that had not stopped by
        the deadline.
        """
        slow: list[Stopping] = []
        for remaining in range(len(self._started), 0, -1):
            worker = self._started.pop()
            _log.info("stopping worker", worker=worker.name)
            stopping = Stopping(worker.name, worker.stop, deadline)
            share = (deadline - time.monotonic()) / remaining
            if stopping.wait(min(deadline, time.monotonic() + share)) is None:
                slow.append(stopping)
            else:
                stopping.report()
        late = []
        for stopping in slow:
            stopping.wait(deadline)
            if stopping.report() == "late":
                late.append(stopping.name)
        return late


StopOutcome = Literal["stopped", "failed", "late"]


class Stopping:
    """``stop(seconds left until deadline)`` under way on a thread of its own.

    A stop that overruns cannot hold its caller past the deadline; one that
    raises is logged.
    """

    def __init__(self, name: str, stop: Callable[[float], object], deadline: float) -> None:
        self.name = name
        self._outcome: StopOutcome | None = None
        self._thread = threading.Thread(
            target=self._run, args=(stop, deadline), name=f"stop-{name}", daemon=True
        )
        self._thread.start()

    def _run(self, stop: Callable[[float], object], deadline: float) -> None:
        try:
            stop(seconds_left(deadline))
            self._outcome = "stopped"
        except BaseException:
            _log.exception("failed to stop", worker=self.name)
            self._outcome = "failed"

    def wait(self, until: float) -> StopOutcome | None:
        """The outcome, waiting for it until ``until`` (``time.monotonic()``); None: not yet."""
        self._thread.join(timeout=seconds_left(until))
        return self._outcome

    def report(self) -> StopOutcome:
        """Log the outcome as it is now ("late" while still stopping) and return it."""
        outcome = self._outcome or "late"
        if outcome == "stopped":
            _log.info("worker stopped", worker=self.name)
        elif outcome == "late":
            _log.warning("worker did not stop in time; left behind", worker=self.name)
        return outcome


def stop_within(name: str, stop: Callable[[float], object], deadline: float) -> StopOutcome:
    """``stop(seconds left)``, waited for until ``deadline``; "late" if not done by then."""
    return Stopping(name, stop, deadline).wait(deadline) or "late"
