"""What mutual TLS costs a simple unary call: calls/s plaintext against mTLS, in one process.

``python -m bench.tls_cost [--seconds S]`` serves an empty method twice (a bare
gRPC server, the services' thread pool size), once on a plaintext port and once
with the chassis' server credentials (mutual TLS, dynamic reload), and runs the
same closed loop against each: one call in flight, then 16 (one channel each),
then a new connection per call (the handshake's own cost), in alternating rounds
(medians shown). Client and server share this process and its GIL, so compare
the ratio, not the absolute figures; on a shared 2-core machine a single round
varies by a third.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent import futures

import grpc
from chassis.tls import TlsFiles, secure_channel, server_credentials
from chassis.tls.devca import ensure_dev_ca

METHOD = "/astra.bench.v1.Empty/Call"


def _raw(data: bytes) -> bytes:
    return data


def _serve(credentials: grpc.ServerCredentials | None) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    handler = grpc.unary_unary_rpc_method_handler(
        lambda _request, _context: b"", request_deserializer=_raw, response_serializer=_raw
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("astra.bench.v1.Empty", {"Call": handler}),)
    )
    address = "127.0.0.1:0"
    port = (
        server.add_secure_port(address, credentials)
        if credentials is not None
        else server.add_insecure_port(address)
    )
    server.start()
    return server, f"127.0.0.1:{port}"


def _closed_loop(open_channel: Callable[[], grpc.Channel], threads: int, seconds: float) -> float:
    """Calls per second with ``threads`` calls in flight, one channel per thread."""
    counts = [0] * threads
    stop_at = time.perf_counter() + seconds

    def worker(index: int) -> None:
        with open_channel() as channel:
            call = channel.unary_unary(METHOD, request_serializer=_raw, response_deserializer=_raw)
            call(b"", timeout=10)  # connected before counting
            while time.perf_counter() < stop_at:
                call(b"", timeout=10)
                counts[index] += 1

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return sum(counts) / seconds


def _new_connections(open_channel: Callable[[], grpc.Channel], seconds: float) -> float:
    """Calls per second when each call opens its own connection (and handshake)."""
    count = 0
    stop_at = time.perf_counter() + seconds
    while time.perf_counter() < stop_at:
        with open_channel() as channel:
            channel.unary_unary(METHOD, request_serializer=_raw, response_deserializer=_raw)(
                b"", timeout=10
            )
        count += 1
    return count / seconds


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tls_cost", description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.5, help="length of each measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="astra-tls-cost-") as folder:
        ca = ensure_dev_ca(folder)
        server_files, client_files = ca.files("ledger"), ca.client
        plain_server, plain_target = _serve(None)
        tls_server, tls_target = _serve(server_credentials(server_files))
        openers: dict[str, Callable[[], grpc.Channel]] = {
            "plaintext": lambda: grpc.insecure_channel(
                plain_target, options=[("grpc.use_local_subchannel_pool", 1)]
            ),
            "mTLS": lambda: _tls_channel(tls_target, client_files),
        }
        for opener in openers.values():
            _closed_loop(opener, 4, 0.5)  # warm both servers and the client before counting
        measures: dict[str, Callable[[Callable[[], grpc.Channel]], float]] = {
            "1 in flight": lambda opener: _closed_loop(opener, 1, args.seconds),
            "16 in flight": lambda opener: _closed_loop(opener, 16, args.seconds),
            "new connection per call": lambda opener: _new_connections(opener, args.seconds),
        }
        # Rounds alternate the two, so a machine that slows down mid-run charges both alike.
        samples: dict[tuple[str, str], list[float]] = {}
        for round_number in range(args.rounds):
            for row, measure in measures.items():
                order = list(openers) if round_number % 2 == 0 else list(reversed(openers))
                for name in order:
                    samples.setdefault((row, name), []).append(measure(openers[name]))
        figures = {key: statistics.median(values) for key, values in samples.items()}
        plain_server.stop(0)
        tls_server.stop(0)
    print(f"{'calls/s (median)':<26}{'plaintext':>12}{'mTLS':>12}{'mTLS/plain':>12}")
    for row in measures:
        plain, tls = figures[(row, "plaintext")], figures[(row, "mTLS")]
        print(f"{row:<26}{plain:>12,.0f}{tls:>12,.0f}{tls / plain:>12.2f}")


def _tls_channel(target: str, files: TlsFiles) -> grpc.Channel:
    return secure_channel(target, files, options=[("grpc.use_local_subchannel_pool", 1)])


if __name__ == "__main__":
    main()
