"""The bench's CPU accounting, on real processes and a real PostgreSQL backend."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
from astra_testkit.postgres import PostgresServer
from astra_testkit.waiting import wait_until

from bench.cpu import Database, cpu_cost

# A worker that burns this much CPU once told to, then reports and idles.
BURN_SECONDS = 0.4

_WORKER = textwrap.dedent(
    """
    import pathlib, sys, time
    folder = pathlib.Path(sys.argv[1])
    while not (folder / "go").exists():
        time.sleep(0.01)
    start = time.process_time()
    while time.process_time() - start < {burn}:
        pass
    (folder / "done").write_text("")
    time.sleep(60)
    """
).format(burn=BURN_SECONDS)

# The server process only starts the worker and waits: what it spends is its child's.
_SERVER = textwrap.dedent(
    """
    import subprocess, sys
    subprocess.run([sys.executable, "-c", sys.argv[1], sys.argv[2]])
    """
)


def test_a_servers_workers_count_as_the_server(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, _WORKER, str(tmp_path)], start_new_session=True
    )
    try:
        time.sleep(0.5)  # the worker is started and idle before measuring
        with cpu_cost([server.pid]) as cost:
            (tmp_path / "go").write_text("")
            wait_until(lambda: (tmp_path / "done").exists(), 30, "the worker to burn its CPU")
        assert BURN_SECONDS * 0.9 <= cost.server < BURN_SECONDS + 1.0
        # The test itself only waited.
        assert cost.client < BURN_SECONDS / 2
        assert cost.postgres == 0.0
    finally:
        os.killpg(server.pid, signal.SIGKILL)  # the worker too
        server.wait(timeout=10)


def test_the_databases_backends_count_and_no_other(postgres: PostgresServer) -> None:
    measured, other = postgres.create_database(), postgres.create_database()
    query = "SELECT sum(g) FROM generate_series(1, 4000000) AS g"
    with (
        psycopg.connect(postgres.url_for(measured)) as busy,
        psycopg.connect(postgres.url_for(other)) as elsewhere,
    ):
        with cpu_cost([], Database(postgres.admin_url, measured)) as cost:
            busy.execute(query).fetchone()
        with cpu_cost([], Database(postgres.admin_url, measured)) as unrelated:
            elsewhere.execute(query).fetchone()
    assert cost.postgres > 0.1
    assert cost.server == 0.0
    # The same work on another database's backend is not charged to this one.
    assert unrelated.postgres < cost.postgres / 4
