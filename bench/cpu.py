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


def _tree(pids: Sequence[int]) -> list[int]:
    """The given processes and all their descendants."""
    found = []
    for pid in pids:
        found += [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    return found


def _cpu_by_pid(pids: Sequence[int]) -> dict[int, float]:
    seconds = {}
    for pid in pids:
        try:
            seconds[pid] = _cpu_seconds(psutil.Process(pid))
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

    def backends(self) -> list[int]:
        """The server processes serving connections to this database now."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.name,),
            ).fetchall()
        return [row[0] for row in rows]


@contextmanager
def cpu_cost(server_pids: Sequence[int], database: Database | None = None) -> Iterator[CpuCost]:
    """Measure the CPU the ``with`` block cost; the figures are filled in when it ends.

    The server's process tree and the database's backends are looked up at both
    ends, so workers and pooled connections opened during the phase count too.
    """
    cost = CpuCost()
    me = psutil.Process()
    backends = database.backends if database is not None else list
    servers_before = _cpu_by_pid(_tree(server_pids))
    postgres_before = _cpu_by_pid(backends())
    client_before = _cpu_seconds(me)
    yield cost
    cost.client = _cpu_seconds(me) - client_before
    cost.server = _spent(servers_before, _cpu_by_pid(_tree(server_pids)))
    cost.postgres = _spent(postgres_before, _cpu_by_pid(backends()))
