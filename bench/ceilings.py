"""The machine's ceilings, measured in the same run as the services.

- PostgreSQL single-row update transactions with 8 clients (pgbench -N): one
  commit per transfer can never go faster than this.
- gRPC unary empty calls from 16 concurrent clients (the same client harness
  and concurrency as the ledger's single-transfer figure): no service call can
  go faster than this. With it, the CPU an empty call costs the server and the
  load generator: what any service call costs at least.
- The same empty calls through the chassis every service runs (tracing,
  metrics, request ids and access logs, token verification): what any of our
  service calls costs before its own work starts.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from astra_testkit.ports import free_port, wait_for_port
from astra_testkit.tls import tls_env

from bench.common import MINT, BenchEnv, Section, mint_auth_env, percentile
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


@dataclass(frozen=True)
class EmptyServer:
    target: str
    pid: int
    # What each call must carry: a token when the server runs the chassis.
    metadata: tuple[tuple[str, str], ...]


@contextmanager
def empty_server(*, chassis: bool = False) -> Iterator[EmptyServer]:
    """``bench.empty_server`` as a process, bare or (``chassis``) behind our chassis."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.empty_server", str(port)]
    with contextlib.ExitStack() as stack:
        env = dict(os.environ) | tls_env("BENCH", "ledger")
        metadata: tuple[tuple[str, str], ...] = ()
        if chassis:
            argv.append("--chassis")
            env |= stack.enter_context(mint_auth_env("BENCH"))
            metadata = MINT.metadata()
        server = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, start_new_session=True)
        try:
            wait_for_port("127.0.0.1", port, 30)
            yield EmptyServer(f"127.0.0.1:{port}", server.pid, metadata)
        finally:
            server.terminate()
            server.wait(timeout=10)


def measure_empty_calls(
    concurrency: int, seconds: float = 8.0, *, chassis: bool = False
) -> tuple[LoadResult, CpuCost]:
    """The closed-loop load against the empty server, and the CPU it cost each side."""
    with empty_server(chassis=chassis) as server:
        warm = run_closed_loop(
            server.target, METHOD, [b""] * 500, concurrency=concurrency, metadata=server.metadata
        )
        if warm.errors:
            raise RuntimeError(f"{warm.errors} of 500 empty calls failed")
        with cpu_cost([server.pid]) as cost:
            result = run_closed_loop(
                server.target,
                METHOD,
                [b""] * 10_000_000,
                concurrency=concurrency,
                duration=seconds,
                metadata=server.metadata,
            )
        return result, cost


def add_empty_calls(
    section: Section, name: str, result: LoadResult, cost: CpuCost
) -> tuple[float, float]:
    """Rate, p50/p99 and CPU per call of one empty-call load; returns (calls/s, server CPU ms)."""
    rate, latencies = result.calls_per_second, result.latencies_ms
    server_cpu_ms = cost.server / result.calls * 1000
    section.add(f"{name}: calls/s (16 concurrent clients)", rate, "calls/s")
    section.add(f"{name}: p50 per call", percentile(latencies, 50), "ms")
    section.add(f"{name}: p99 per call", percentile(latencies, 99), "ms")
    section.add(f"{name}: server CPU per call", server_cpu_ms, "ms")
    section.add(f"{name}: client CPU per call", cost.client / result.calls * 1000, "ms")
    section.latencies_ms[f"{name} (16 clients)"] = latencies
    return rate, server_cpu_ms


def measure(env: BenchEnv) -> Section:
    section = Section("Machine ceilings")
    tps = postgres_commit_rate(env)
    section.add("PostgreSQL single-row update commits/s (pgbench -N, 8 clients)", tps, "commits/s")
    env.figures["postgres.commits_per_s"] = tps
    for chassis, name, key in (
        (False, "gRPC empty calls, bare server", "grpc.empty"),
        (True, "gRPC empty calls through the chassis", "grpc.chassis_empty"),
    ):
        time.sleep(1)
        result, cost = measure_empty_calls(16, chassis=chassis)
        rate, server_cpu_ms = add_empty_calls(section, name, result, cost)
        env.figures[f"{key}_calls_per_s"] = rate
        env.figures[f"{key}_call_server_cpu_ms"] = server_cpu_ms
    return section
