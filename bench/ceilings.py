"""The machine's ceilings, measured in the same run as the services.

- PostgreSQL single-row update transactions with 8 clients (pgbench -N): one
  commit per transfer can never go faster than this.
- gRPC unary empty calls from 16 concurrent clients (the same client harness
  and concurrency as the ledger's single-transfer figure): no service call can
  go faster than this.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

from astra_testkit.ports import free_port, wait_for_port

from bench.common import BenchEnv, Section, percentile
from bench.empty_server import METHOD
from bench.load import run_closed_loop

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


def grpc_empty_call_rate(concurrency: int, seconds: float = 8.0) -> tuple[float, list[float]]:
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
        result = run_closed_loop(
            target, METHOD, [b""] * 10_000_000, concurrency=concurrency, duration=seconds
        )
        return result.calls_per_second, result.latencies_ms
    finally:
        server.terminate()
        server.wait(timeout=10)


def measure(env: BenchEnv) -> Section:
    section = Section("Machine ceilings")
    tps = postgres_commit_rate(env)
    section.add("PostgreSQL single-row update commits/s (pgbench -N, 8 clients)", tps, "commits/s")
    env.figures["postgres.commits_per_s"] = tps
    time.sleep(1)
    rate, latencies = grpc_empty_call_rate(16)
    section.add("gRPC empty unary calls/s (16 concurrent clients)", rate, "calls/s")
    section.add("gRPC empty call p50 (16 concurrent)", percentile(latencies, 50), "ms")
    section.add("gRPC empty call p99 (16 concurrent)", percentile(latencies, 99), "ms")
    section.latencies_ms["gRPC empty call (16 clients)"] = latencies
    env.figures["grpc.empty_calls_per_s"] = rate
    return section
