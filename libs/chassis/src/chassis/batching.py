"""Group commit: concurrent single requests executed together as batches.

One commit per request can never beat the database's commit rate, and a hot
row serializes every writer behind its lock. A ``GroupCommitter`` queues the
requests that callers submit one at a time and has its worker threads execute
whatever has gathered as one batch (one transaction): each caller gets its own
item's outcome, while the database sees a few large transactions instead of
many small ones. Nothing waits on a timer: a worker takes what is queued the
moment it is free, so a lone request goes straight through.

Batching never means shared fate. A batch whose ``execute`` raises is split in
halves and each half executed again, recursively, so an item that fails for
reasons of its own ends up alone and only its caller gets the error; the
others get their outcomes. This costs nothing while batches succeed. It relies
on ``execute`` being idempotent per request: the half executed again may hold
requests whose work was already committed (the error came after the commit),
and it must replay their outcomes, not apply them twice. An unreachable
database is the one error not split: it would fail every part again, and the
outcome is unknown to everyone alike (retry with the same id).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

from chassis.db.retry import is_database_unavailable
from chassis.kernel.errors import DeadlineExceeded

_log = structlog.get_logger("chassis.batching")

Request = TypeVar("Request")
Outcome = TypeVar("Outcome")
Item = TypeVar("Item")


def drain(
    source: queue.SimpleQueue[Item | None], first: Item, limit: int
) -> tuple[list[Item], bool]:
    """``first`` and whatever else is queued now, up to ``limit`` items.

    Returns the items and whether the stop sentinel (None) was met.
    """
    items = [first]
    while len(items) < limit:
        try:
            item = source.get_nowait()
        except queue.Empty:
            return items, False
        if item is None:
            return items, True
        items.append(item)
    return items, False


@dataclass(slots=True)
class _Job(Generic[Request, Outcome]):
    request: Request
    future: Future[Outcome]


class GroupCommitter(Generic[Request, Outcome]):
    """Runs ``execute`` on batches of submitted requests; one outcome per request, in order.

    ``execute`` must be idempotent per request (a request whose work it already
    committed is answered with the same outcome again, without a second
    effect): a failed batch is executed again in parts (see the module's doc).
    """

    def __init__(
        self,
        execute: Callable[[Sequence[Request]], Sequence[Outcome]],
        *,
        max_batch: int,
        workers: int,
        name: str,
    ) -> None:
        self._execute = execute
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job[Request, Outcome] | None] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, request: Request, timeout: float | None = None) -> Outcome:
        """Queue one request and wait for its outcome, or the error of its own item.

        When ``timeout`` seconds pass first: a request not started yet is
        withdrawn (it will never run), one under way runs on; either way the
        caller gets ``DeadlineExceeded`` and learns the outcome by retrying
        with the same id.
        """
        if self._closed.is_set():
            raise RuntimeError("the batcher is closed")
        job: _Job[Request, Outcome] = _Job(request, Future())
        self._queue.put(job)
        try:
            return job.future.result(timeout)
        except FutureTimeout:
            job.future.cancel()
            raise DeadlineExceeded() from None

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stop = drain(self._queue, first, self._max_batch)
            self._flush(jobs)
            if stop:
                return

    def _flush(self, jobs: list[_Job[Request, Outcome]]) -> None:
        # A job whose caller gave up before it started is dropped here, unrun.
        live = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        if live:
            self._settle(live, retry_alone=True)

    def _settle(self, jobs: list[_Job[Request, Outcome]], *, retry_alone: bool) -> None:
        """Execute ``jobs`` as one batch; on failure, in halves, until the failure is alone."""
        try:
            outcomes = list(self._execute([j.request for j in jobs]))
            if len(outcomes) != len(jobs):
                raise RuntimeError(f"{len(jobs)} requests executed, {len(outcomes)} outcomes")
        except Exception as error:
            if is_database_unavailable(error):
                # Every part would fail alike; whether anything committed is unknown.
                self._fail(jobs, error)
            elif len(jobs) > 1:
                _log.warning(
                    "batch failed; executing it again in halves", size=len(jobs), error=repr(error)
                )
                half = len(jobs) // 2
                self._settle(jobs[:half], retry_alone=True)
                self._settle(jobs[half:], retry_alone=True)
            elif retry_alone:
                # Alone now. If the error came after its commit, executing it
                # again replays the committed outcome; if not, it fails again.
                self._settle(jobs, retry_alone=False)
            else:
                self._fail(jobs, error)
            return
        except BaseException as error:
            self._fail(jobs, error)
            return
        for job, outcome in zip(jobs, outcomes, strict=True):
            job.future.set_result(outcome)

    @staticmethod
    def _fail(jobs: list[_Job[Request, Outcome]], error: BaseException) -> None:
        for job in jobs:
            job.future.set_exception(error)

    def close(self) -> None:
        self._closed.set()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=30)
