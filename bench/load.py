"""A closed-loop load generator for unary gRPC calls with pre-serialized requests.

Requests are built and serialized before the clock starts, and responses are
kept as bytes, so the client spends its time on the wire, not on protobuf:
what is measured is the server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc
from astra_testkit.tls import tls_channel

# Batches of transfers are large messages; gRPC's default limit is 4 MiB.
_MESSAGE_LIMITS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def _raw(data: bytes) -> bytes:
    return data


@dataclass
class LoadResult:
    calls: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    responses: list[bytes] = field(default_factory=list)

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0


def run_closed_loop(
    target: str,
    method: str,
    payloads: Sequence[bytes],
    *,
    concurrency: int,
    metadata: Sequence[tuple[str, str]] = (),
    timeout: float = 60.0,
    keep_responses: bool = False,
    duration: float | None = None,
    on_error: Callable[[grpc.RpcError], None] | None = None,
) -> LoadResult:
    """Send every payload once (or until ``duration``), ``concurrency`` calls in flight.

    Each worker thread has its own channel: one HTTP/2 connection per simulated
    client, as separate services would have.
    """
    result = LoadResult()
    lock = threading.Lock()
    cursor = iter(range(len(payloads)))
    stop_at: list[float] = []

    def worker() -> None:
        channel = tls_channel(
            target,
            options=[
                *_MESSAGE_LIMITS,
                # Otherwise grpc shares one connection among a process's channels to
                # the same target, and SO_REUSEPORT would see a single client.
                ("grpc.use_local_subchannel_pool", 1),
            ],
        )
        call = channel.unary_unary(method, request_serializer=_raw, response_deserializer=_raw)
        latencies: list[float] = []
        responses: list[bytes] = []
        errors = 0
        while True:
            with lock:
                index = next(cursor, None)
            if index is None or (stop_at and time.perf_counter() > stop_at[0]):
                break
            started = time.perf_counter()
            try:
                reply = call(payloads[index], timeout=timeout, metadata=tuple(metadata))
            except grpc.RpcError as error:
                errors += 1
                if on_error is not None:
                    on_error(error)
                continue
            latencies.append((time.perf_counter() - started) * 1000)
            if keep_responses:
                responses.append(reply)
        channel.close()
        with lock:
            result.latencies_ms.extend(latencies)
            result.responses.extend(responses)
            result.calls += len(latencies)
            result.errors += errors

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    began = time.perf_counter()
    if duration is not None:
        stop_at.append(began + duration)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - began
    return result


def run_fixed_rate(
    target: str,
    method: str,
    payloads: Sequence[bytes],
    *,
    rate_per_s: float,
    metadata: Sequence[tuple[str, str]] = (),
    timeout: float = 60.0,
) -> LoadResult:
    """Send the payloads at a fixed rate, whatever the server's pace (an open loop).

    A closed loop measures latency at saturation, where it is mostly queueing;
    this one measures it at a given load. Each latency runs from the call's
    scheduled start, so a sender that falls behind is charged, not hidden.
    """
    result = LoadResult()
    # gRPC runs a future's callbacks after result() may already have returned:
    # the sender waits for the callbacks themselves, so no call goes uncounted.
    finished = threading.Condition()
    channel = tls_channel(target, options=_MESSAGE_LIMITS)
    call = channel.unary_unary(method, request_serializer=_raw, response_deserializer=_raw)

    def record(scheduled: float) -> Callable[[grpc.Future[bytes]], None]:
        def done(future: grpc.Future[bytes]) -> None:
            elapsed_ms = (time.perf_counter() - scheduled) * 1000
            with finished:
                if future.exception() is None:
                    result.calls += 1
                    result.latencies_ms.append(elapsed_ms)
                else:
                    result.errors += 1
                finished.notify()

        return done

    interval = 1.0 / rate_per_s
    began = time.perf_counter()
    for index, payload in enumerate(payloads):
        scheduled = began + index * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent = call.future(payload, timeout=timeout, metadata=tuple(metadata))
        sent.add_done_callback(record(scheduled))
    with finished:
        finished.wait_for(lambda: result.calls + result.errors == len(payloads))
    result.seconds = time.perf_counter() - began
    channel.close()
    return result
