"""The machine's ceilings, measured in the same run as the services.

- PostgreSQL single-row update transactions with 8 clients (pgbench -N): one
  commit per transfer can never go faster than this.
- gRPC unary empty calls from 16 concurrent clients (the same client harness
  and concurrency as the ledger's single-transfer figure): no service call can
  go faster than this. With it, the CPU an empty call costs the server and the
  load generator: what any service call costs at least.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

from astra_testkit.ports import free_port, wait_for_port

from bench.common import BenchEnv, Section, percentile
from bench.cpu import CpuCost, cpu_cost
from bench.empty_server import METHOD
from bench.load import LoadResult, run_closed_loop

PGBENCH_SECONDS = 8


def postgres_commit_rate(env: BenchEnv) -> float:
    database = env.postgres.create_database(prefix="astra_bench_pgbench")
    url = env.postgres.url_for(database)
    try:
        subprocess.run(
            ["pgbench", "-i", "-q", "-s", "10", url], check=True, capture_output=True, timeout=300
        )
        run = subprocess.run(
            ["pgbench", "-N", "-c", "8", "-j", "2", "-T", str(PGBENCH_SECONDS), "-n", url],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        env.postgres.drop_database(database)
    match = re.search(r"tps = ([0-9.]+)", run.stdout)
    if match is None:
        raise RuntimeError(f"pgbench printed no tps:\n{run.stdout}")
    return float(match.group(1))


def measure_empty_calls(concurrency: int, seconds: float = 8.0) -> tuple[LoadResult, CpuCost]:
    """The closed-loop load against the empty server, and the CPU it cost each side."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.empty_server", str(port)],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_for_port("127.0.0.1", port, 30)
        target = f"127.0.0.1:{port}"
        run_closed_loop(target, METHOD, [b""] * 500, concurrency=concurrency)  # warm up
        with cpu_cost([server.pid]) as cost:
            result = run_closed_loop(
                target, METHOD, [b""] * 10_000_000, concurrency=concurrency, duration=seconds
            )
        return result, cost
    finally:
        server.terminate()
        server.wait(timeout=10)


def measure(env: BenchEnv) -> Section:
    section = Section("Machine ceilings")
    tps = postgres_commit_rate(env)
    section.add("PostgreSQL single-row update commits/s (pgbench -N, 8 clients)", tps, "commits/s")
    env.figures["postgres.commits_per_s"] = tps
    time.sleep(1)
    empty, cost = measure_empty_calls(16)
    rate, latencies = empty.calls_per_second, empty.latencies_ms
    server_cpu_ms = cost.server / empty.calls * 1000
    section.add("gRPC empty unary calls/s (16 concurrent clients)", rate, "calls/s")
    section.add("gRPC empty call p50 (16 concurrent)", percentile(latencies, 50), "ms")
    section.add("gRPC empty call p99 (16 concurrent)", percentile(latencies, 99), "ms")
    section.add("gRPC empty call: server CPU per call", server_cpu_ms, "ms")
    section.add("gRPC empty call: client CPU per call", cost.client / empty.calls * 1000, "ms")
    section.latencies_ms["gRPC empty call (16 clients)"] = latencies
    env.figures["grpc.empty_calls_per_s"] = rate
    env.figures["grpc.empty_call_server_cpu_ms"] = server_cpu_ms
    return section
