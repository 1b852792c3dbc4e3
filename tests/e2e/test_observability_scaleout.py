"""Several ledger processes on one port (SO_REUSEPORT), their metrics summed on one endpoint."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from astra.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from astra_testkit.ports import free_port
from astra_testkit.postgres import PostgresServer
from astra_testkit.processes import ServiceProcess
from astra_testkit.tls import tls_channel
from astra_testkit.waiting import wait_until

from tests.ledger_fixtures import ledger_auth_env, service_metadata
from tests.observability_fixtures import sample, scrape

OPEN_ACCOUNT = {"grpc_service": "astra.ledger.v1.LedgerService", "grpc_method": "OpenAccount"}


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(child) for child in text)
    return sorted(found)


def _sockets(pid: int) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            continue  # closed while we looked
    return count


def _serving(process: ServiceProcess) -> int:
    """How many server processes have said they serve (they share the supervisor's output)."""
    return process.logs().count('"event": "ledger serving"')


@pytest.fixture
def two_ledgers(
    postgres: PostgresServer, tmp_path: Path
) -> Iterator[tuple[str, int, ServiceProcess]]:
    database = postgres.create_database(prefix="astra_e2e_scaleout")
    port, metrics_port = free_port(), free_port()
    process = ServiceProcess(
        "ledger-x2",
        [str(Path(sys.executable).parent / "astra-ledger"), "serve"],
        {
            "LEDGER_DATABASE_URL": postgres.url_for(database),
            "LEDGER_GRPC_PORT": str(port),
            "LEDGER_METRICS_PORT": str(metrics_port),
            "LEDGER_PROCESSES": "2",
            "LEDGER_MIGRATE_ON_START": "true",
            "LEDGER_GRACE_SECONDS": "2",
            "LEDGER_DB_POOL_SIZE": "4",
            **ledger_auth_env(),
        },
        log_dir=tmp_path,
    ).start()
    target = f"127.0.0.1:{port}"
    try:
        process.wait_healthy(target)
        wait_until(lambda: _serving(process) == 2, 60, "both server processes to serve")
        yield target, metrics_port, process
    finally:
        process.terminate()
        postgres.drop_database(database)


def _open(target: str, account_id: str) -> grpc.Channel:
    # A private subchannel pool: one TCP connection per channel, not one shared by all.
    channel = tls_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
    ledger_pb2_grpc.LedgerServiceStub(channel).OpenAccount(
        ledger_pb2.OpenAccountRequest(
            account=ledger_pb2.Account(
                id=account_id, currency="EUR", normal_side=ledger_pb2.NORMAL_SIDE_DEBIT
            )
        ),
        timeout=30,
        metadata=service_metadata(),
    )
    return channel


def test_processes_share_the_port_and_the_metrics_endpoint_sums_them(
    two_ledgers: tuple[str, int, ServiceProcess],
) -> None:
    target, metrics_port, supervisor = two_ledgers
    children = _children(supervisor.pid)
    sockets_before = {pid: _sockets(pid) for pid in children}

    # Separate connections: the kernel spreads connections, not calls, over the processes.
    channels = [_open(target, f"acct_scale_{i}") for i in range(24)]
    try:
        sockets_after = {pid: _sockets(pid) for pid in children}
        assert all(sockets_after[pid] > sockets_before[pid] for pid in children), (
            sockets_before,
            sockets_after,
        )
        samples = scrape(metrics_port)
        assert sample(samples, "grpc_server_handled_total", grpc_code="OK", **OPEN_ACCOUNT) == 24
        assert sample(samples, "grpc_server_handling_seconds_count", **OPEN_ACCOUNT) == 24
        assert sample(samples, "grpc_server_in_flight_requests", **OPEN_ACCOUNT) == 0
    finally:
        for channel in channels:
            channel.close()

    # A copy that dies is replaced, and what it counted still counts.
    os.kill(children[0], signal.SIGKILL)

    def replaced() -> bool:
        now = _children(supervisor.pid)
        return len(now) == 2 and children[0] not in now

    wait_until(replaced, 60, "the killed process to be replaced")
    wait_until(lambda: _serving(supervisor) == 3, 60, "the new process to serve")
    for i in range(4):
        _open(target, f"acct_after_{i}").close()
    samples = scrape(metrics_port)
    assert sample(samples, "grpc_server_handled_total", grpc_code="OK", **OPEN_ACCOUNT) == 28
