"""A subscription's streaming pull feeding worker threads, with flow control, until stopped.

The client library's callback only queues a message; worker threads take
whatever has queued (up to ``batch_size``) and hand it to ``apply`` as one
batch. Flow control bounds the messages this process holds at once. If the
stream fails (e.g. the subscription vanished), it is reopened after a pause.
Order per ordering key is the client library's: it hands out a key's next
message only after the previous one was acked or nacked.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.subscriber.scheduler import Scheduler

from chassis.background import seconds_left, stop_within
from chassis.batching import drain
from chassis.events.decoding import PulledMessage

_log = structlog.get_logger("chassis.subscriber")


class QueueingScheduler(Scheduler):  # type: ignore[misc]  # the library ships no types
    """Runs the subscriber's callback (a queue put) right in the client library's thread.

    The library's default scheduler submits every message to a thread pool,
    whose task would only be to queue it for our workers: a thread hop and an
    executor submit per message, a tenth of a subscriber's interpreter time at
    1,000 events/s (py-spy), and a wait for the interpreter lock on a busy host.
    """

    def __init__(self) -> None:
        # The library's channel back to its dispatcher (acks, nacks, lease changes).
        self._requests: queue.Queue[Any] = queue.Queue()

    @property
    def queue(self) -> queue.Queue[Any]:
        return self._requests

    def schedule(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        callback(*args, **kwargs)

    def shutdown(self, await_msg_callbacks: bool = False) -> list[Any]:
        # Nothing waits here: every message was handed to the workers' queue at once.
        return []


class StreamingPull:
    """Pulls one subscription and applies what arrives in batches on worker threads."""

    def __init__(
        self,
        client: pubsub_v1.SubscriberClient,
        subscription: str,
        apply: Callable[[list[PulledMessage]], object],
        *,
        name: str,
        workers: int,
        batch_size: int,
        max_outstanding_messages: int,
        resubscribe_seconds: float,
    ) -> None:
        self._client = client
        self._subscription = subscription
        self._apply = apply
        self._name = name
        self._worker_count = workers
        self._batch_size = batch_size
        self._max_outstanding = max_outstanding_messages
        self._resubscribe_seconds = resubscribe_seconds
        self._stop = threading.Event()
        self._future: Any = None
        self._supervisor: threading.Thread | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []

    def start(self) -> None:
        """Open the streaming pull; it is reopened if it fails, until ``stop``."""
        self._supervisor = threading.Thread(
            target=self._supervise, name=f"subscriber-{self._name}", daemon=True
        )
        self._open()
        self._supervisor.start()

    def _open(self) -> None:
        if not self._workers:
            self._workers = [
                threading.Thread(target=self._work, name=f"sub-{self._name}-{i}", daemon=True)
                for i in range(self._worker_count)
            ]
            for worker in self._workers:
                worker.start()
        # The library's own thread queues each message; our workers apply them.
        self._future = self._client.subscribe(
            self._subscription,
            callback=self._queue.put,
            flow_control=pubsub_v1.types.FlowControl(max_messages=self._max_outstanding),
            scheduler=QueueingScheduler(),
        )

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = drain(self._queue, first, self._batch_size)
            try:
                self._apply(batch)
            except Exception:
                _log.exception("subscriber worker failed; messages will be redelivered")
                for message in batch:
                    with contextlib.suppress(Exception):
                        message.nack()
            if stop:
                return

    def _supervise(self) -> None:
        while not self._stop.is_set():
            future = self._future
            try:
                future.result()
            except Exception as error:
                if self._stop.is_set():
                    return
                _log.warning(
                    "streaming pull ended; resubscribing",
                    subscription=self._subscription,
                    error=f"{type(error).__name__}: {error}",
                )
            if self._stop.wait(self._resubscribe_seconds):
                return
            try:
                self._open()
            except Exception:
                _log.exception("cannot reopen the streaming pull", subscription=self._subscription)

    def stop(self, timeout: float = 10.0) -> None:
        """Close the stream, let the workers finish their batches, close the client: all
        within ``timeout`` seconds.

        What is still under way by then is left to finish on its own (daemon
        threads) and logged. With Pub/Sub gone, the client library holds its
        stream's shutdown and its channel's close while it waits to reconnect,
        throttled, for up to about ten seconds; a worker's batch left behind
        either commits (its messages are redelivered, and the inbox absorbs
        them) or dies with the process (rolled back, redelivered).
        """
        deadline = time.monotonic() + timeout
        self._stop.set()
        future = self._future
        if future is not None:
            future.cancel()  # returns at once: the library shuts the stream down on a thread
            # At most half the time: what the workers apply matters more than a clean end.
            with contextlib.suppress(Exception):
                future.result(timeout=seconds_left(deadline) / 2)
        # After the stream's messages: a worker applies what is queued, then ends.
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join(timeout=seconds_left(deadline))
        if self._supervisor is not None:
            # It waits on the stream's end; once it sees it, it reopens nothing after a stop.
            self._supervisor.join(timeout=seconds_left(deadline))
        applying = sum(worker.is_alive() for worker in self._workers)
        if applying:
            _log.warning(
                "subscriber workers not finished; left behind",
                subscription=self._subscription,
                workers=applying,
            )
        close_client(self._client, self._subscription, deadline)


def close_client(client: pubsub_v1.SubscriberClient, subscription: str, deadline: float) -> None:
    """Close ``client`` on a daemon thread, waited for until ``deadline`` (``time.monotonic()``);
    one still closing then is logged and left to finish on its own."""
    name = f"pubsub-client-{subscription.rsplit('/', 1)[-1]}"
    if stop_within(name, lambda _left: client.close(), deadline) == "late":
        _log.warning("Pub/Sub client still closing; left behind", subscription=subscription)
