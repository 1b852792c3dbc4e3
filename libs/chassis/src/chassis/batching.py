"""Group commit: concurrent single requests executed together as batches.

One commit per request can never beat the database's commit rate, and a hot
row serializes every writer behind its lock. A ``GroupCommitter`` queues the
requests that callers submit one at a time and has its worker threads execute
whatever has gathered as one batch (one transaction): each caller gets its own
item's outcome, while the database sees a few large transactions instead of
many small ones. Nothing waits on a timer: a worker takes what is queued the
moment it is free, so a lone request goes straight through.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

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
    """Runs ``execute`` on batches of submitted requests; one outcome per request, in order."""

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
        """Queue one request and wait for its outcome (or the batch's exception)."""
        if self._closed.is_set():
            raise RuntimeError("the batcher is closed")
        job: _Job[Request, Outcome] = _Job(request, Future())
        self._queue.put(job)
        return job.future.result(timeout)

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
        live = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            outcomes = self._execute([j.request for j in live])
        except BaseException as error:
            for job in live:
                job.future.set_exception(error)
            return
        for job, outcome in zip(live, outcomes, strict=True):
            job.future.set_result(outcome)

    def close(self) -> None:
        self._closed.set()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=30)
