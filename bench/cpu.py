"""What a measured phase cost in CPU, by the process that spent it.

A rate alone cannot tell a server that is out of CPU from one that waits. So
the ledger and ceilings sections also report CPU time per call (or per 1,000
transfers): the server's processes (with their children, for the multi-process
shape), PostgreSQL's backends serving the section's database, and this process,
whose threads are the load generator. On a 2-core machine all three share the
cores, and the ratio of two rates follows the ratio of what each call costs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import psutil
import psycopg


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _tree(pids: Sequence[int]) -> list[psutil.Process]:
    processes = []
    for pid in pids:
        root = psutil.Process(pid)
        processes += [root, *root.children(recursive=True)]
    return processes


def _backends(admin_url: str, database: str) -> list[int]:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return [row[0] for row in rows]


def _by_pid(processes: Sequence[psutil.Process]) -> dict[int, float]:
    seconds = {}
    for process in processes:
        try:
            seconds[process.pid] = _cpu_seconds(process)
        except psutil.NoSuchProcess:
            continue  # it ended in between: its time is lost to both snapshots alike
    return seconds


def _spent(before: dict[int, float], after: dict[int, float]) -> float:
    # A process that started during the phase spent all of its time in it.
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


@dataclass
class CpuCost:
    """CPU seconds spent during the phase: server processes, database backends, load generator."""

    server: float = 0.0
    postgres: float = 0.0
    client: float = 0.0


@dataclass(frozen=True)
class Database:
    admin_url: str
    name: str


@contextmanager
def cpu_cost(server_pids: Sequence[int], database: Database | None = None) -> Iterator[CpuCost]:
    """Measure the CPU the ``with`` block cost; the figures are filled in when it ends.

    The server's process tree and the database's backends are looked up at both
    ends, so workers and pooled connections opened during the phase count too.
    """
    cost = CpuCost()
    me = psutil.Process()

    def backends() -> list[psutil.Process]:
        if database is None:
            return []
        found = []
        for pid in _backends(database.admin_url, database.name):
            try:
                found.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                continue
        return found

    servers_before = _by_pid(_tree(server_pids))
    postgres_before = _by_pid(backends())
    client_before = _cpu_seconds(me)
    yield cost
    cost.client = _cpu_seconds(me) - client_before
    cost.server = _spent(servers_before, _by_pid(_tree(server_pids)))
    cost.postgres = _spent(postgres_before, _by_pid(backends()))
