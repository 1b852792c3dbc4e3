"""Ledger throughput and latency over gRPC into PostgreSQL.

The ledger runs as a real process (as in production) on a fresh database. The
client sends requests serialized before the clock starts. Figures:
- batches of 1,000 and of 100 (CreateTransfers), transfers/s and p50/p99 per call;
- single-transfer calls (CreateTransfer, batch size 1) from 16 concurrent
  clients, calls/s and p50/p99, and their ratio to the same run's empty-call rate;
- for each measured load, the CPU it cost the ledger's processes, PostgreSQL and
  the load generator, per call or per 1,000 transfers.
Each client works on its own set of accounts (as independent tenants would):
batches that share accounts queue behind each other's row locks by design.

Run alone: ``python -m bench.ledger_bench``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from astra.ledger.v1 import ledger_pb2 as pb
from astra.ledger.v1.ledger_pb2_grpc import LedgerServiceStub
from astra_testkit.ports import free_port
from astra_testkit.processes import ServiceProcess
from astra_testkit.tls import tls_files
from chassis.grpc.client import open_channel

from bench.common import (
    MINT,
    BenchEnv,
    Section,
    mint_auth_env,
    percentile,
    print_figures,
)
from bench.cpu import CpuCost, Database, cpu_cost
from bench.load import LoadResult, run_closed_loop

SERVICE = "/astra.ledger.v1.LedgerService"
ACCOUNTS_PER_CLIENT = 2000
D, C = pb.DIRECTION_DEBIT, pb.DIRECTION_CREDIT


def _leg(account: str, direction: int, amount: int) -> pb.Leg:
    return pb.Leg(account_id=account, direction=direction, amount=amount, currency="EUR")  # type: ignore[arg-type]


def _movement(tid: str, src: str, dst: str, amount: int) -> pb.TransferSpec:
    return pb.TransferSpec(
        id=tid, movement=pb.Movement(legs=[_leg(src, D, amount), _leg(dst, C, amount)])
    )


@dataclass(frozen=True)
class RunningLedger:
    target: str
    pid: int
    database: Database

    def cpu_cost(self) -> AbstractContextManager[CpuCost]:
        """The CPU a phase costs the ledger's processes and its database's backends."""
        return cpu_cost([self.pid], self.database)


LEDGER_COMMAND = [str(Path(sys.executable).parent / "astra-ledger"), "serve"]


@contextmanager
def running_ledger(
    env: BenchEnv, command: list[str] | None = None, **extra_env: str
) -> Iterator[RunningLedger]:
    """A ledger process on a fresh database (``command``: another way to start it)."""
    database = env.postgres.create_database(prefix="astra_bench_ledger")
    port = free_port()
    with mint_auth_env("LEDGER") as auth_env:
        process = ServiceProcess(
            "ledger-bench",
            command or LEDGER_COMMAND,
            {
                "LEDGER_DATABASE_URL": env.postgres.url_for(database),
                "LEDGER_GRPC_PORT": str(port),
                "LEDGER_MIGRATE_ON_START": "true",
                "LEDGER_LOG_LEVEL": "WARNING",
                "LEDGER_METRICS_PORT": "0",
                **auth_env,
                **extra_env,
            },
        ).start()
        target = f"127.0.0.1:{port}"
        try:
            process.wait_healthy(target)
            yield RunningLedger(target, process.pid, Database(env.postgres.admin_url, database))
        finally:
            process.terminate()
            env.postgres.drop_database(database)


def open_accounts(stub: LedgerServiceStub, clients: int) -> list[list[str]]:
    """Per client: accounts that cannot be overdrawn, each funded with plenty."""
    groups = []
    stub.OpenAccount(
        pb.OpenAccountRequest(
            account=pb.Account(
                id="acct_bench_bank", currency="EUR", normal_side=pb.NORMAL_SIDE_DEBIT
            )
        )
    )
    for client in range(clients):
        ids = [f"acct_b{client}_{i}" for i in range(ACCOUNTS_PER_CLIENT)]
        for account_id in ids:
            stub.OpenAccount(
                pb.OpenAccountRequest(
                    account=pb.Account(
                        id=account_id,
                        currency="EUR",
                        normal_side=pb.NORMAL_SIDE_CREDIT,
                        debits_must_not_exceed_credits=True,
                    )
                ),
                timeout=30,
            )
        stub.CreateTransfers(
            pb.CreateTransfersRequest(
                transfers=[_movement(f"tr_fund_{a}", "acct_bench_bank", a, 10**12) for a in ids]
            ),
            timeout=120,
        )
        groups.append(ids)
    return groups


def batch_payloads(tag: str, accounts: list[str], batch: int, count: int) -> list[bytes]:
    payloads = []
    n = len(accounts)
    for b in range(count):
        transfers = []
        for i in range(batch):
            k = b * batch + i
            src, dst = accounts[k % n], accounts[(k * 7 + 1) % n]
            if src == dst:
                dst = accounts[(k + 1) % n]
            transfers.append(_movement(f"tr_{tag}_{b}_{i}", src, dst, 1 + k % 97))
        payloads.append(pb.CreateTransfersRequest(transfers=transfers).SerializeToString())
    return payloads


def single_payloads(tag: str, accounts: list[str], count: int) -> list[bytes]:
    n = len(accounts)
    return [
        pb.CreateTransferRequest(
            transfer=_movement(
                f"tr_{tag}_{k}", accounts[k % n], accounts[(k * 7 + 3) % n], 1 + k % 97
            )
        ).SerializeToString()
        for k in range(count)
    ]


def interleave(groups: list[list[bytes]]) -> list[bytes]:
    """Round-robin, so that concurrent workers tend to pick different clients' requests."""
    out = []
    for i in range(max(len(g) for g in groups)):
        out += [g[i] for g in groups if i < len(g)]
    return out


def check_all_applied(result: LoadResult, expected_items: int) -> int:
    applied = 0
    for raw in result.responses:
        reply = pb.CreateTransfersResponse.FromString(raw)
        applied += sum(1 for r in reply.results if r.ok)
    if result.errors or applied != expected_items:
        raise RuntimeError(f"{result.errors} failed calls, {applied}/{expected_items} applied")
    return applied


def measure_batches(
    target: str,
    accounts: list[list[str]],
    batch: int,
    calls_per_client: int,
    concurrency: int,
    tag: str,
) -> LoadResult:
    payloads = interleave(
        [
            batch_payloads(f"{tag}{c}", group, batch, calls_per_client)
            for c, group in enumerate(accounts)
        ]
    )
    result = run_closed_loop(
        target,
        f"{SERVICE}/CreateTransfers",
        payloads,
        concurrency=concurrency,
        keep_responses=True,
        timeout=120,
        metadata=MINT.metadata(),
    )
    check_all_applied(result, len(payloads) * batch)
    return result


def measure_singles(
    target: str, accounts: list[list[str]], tag: str, duration: float = 10.0
) -> LoadResult:
    """CreateTransfer (batch size 1) from 16 concurrent clients for ``duration``, after a
    warm-up."""
    singles = interleave(
        [single_payloads(f"{tag}{c}", group, 25_000) for c, group in enumerate(accounts)]
    )
    token = MINT.metadata()
    method = f"{SERVICE}/CreateTransfer"
    run_closed_loop(target, method, singles[:500], concurrency=16, metadata=token)
    result = run_closed_loop(
        target, method, singles[500:], concurrency=16, duration=duration, metadata=token
    )
    if result.errors:
        raise RuntimeError(f"{result.errors} single-transfer calls failed")
    return result


def add_load(
    section: Section,
    name: str,
    result: LoadResult,
    *,
    transfers_per_call: int,
    clients: int,
    target: str = "",
    series: str,
) -> float:
    """Throughput and p50/p99 per call of one measured load; returns transfers/s."""
    rate = result.calls * transfers_per_call / result.seconds
    section.add(f"{name}: transfers/s ({clients} clients)", rate, "transfers/s", target)
    section.add(f"{name}: p50 per call", percentile(result.latencies_ms, 50), "ms")
    section.add(f"{name}: p99 per call", percentile(result.latencies_ms, 99), "ms")
    section.latencies_ms[series] = result.latencies_ms
    return rate


def add_cpu(section: Section, name: str, cost: CpuCost, units: float, per: str) -> float:
    """CPU per ``per``: the ledger, PostgreSQL, the load generator; returns the ledger's (ms)."""
    ledger_ms = cost.server / units * 1000
    section.add(f"{name}: ledger CPU per {per}", ledger_ms, "ms")
    section.add(f"{name}: PostgreSQL CPU per {per}", cost.postgres / units * 1000, "ms")
    section.add(f"{name}: load generator CPU per {per}", cost.client / units * 1000, "ms")
    return ledger_ms


# Per empty-call ceiling (the key its figures are stored under): how the rate
# ratio and the CPU ratio are named, and the rate ratio's target.
CEILINGS = [
    (
        "grpc.empty",
        "single transfers / empty gRPC calls (same run)",
        "empty call's server CPU / a single transfer's ledger CPU",
        ">= 0.5",
    ),
    (
        "grpc.chassis_empty",
        "single transfers / empty calls through the chassis (same run)",
        "empty call through the chassis: server CPU / a single transfer's ledger CPU",
        "",
    ),
]


def add_ceiling_ratios(
    section: Section, env: BenchEnv, singles_rate: float, ledger_cpu_ms: float
) -> None:
    """Single transfers against the same run's empty-call ceilings (those that were measured)."""
    for key, rate_name, cpu_name, target in CEILINGS:
        rate = env.figures.get(f"{key}_calls_per_s")
        if rate:
            section.add(rate_name, singles_rate / rate, "ratio", target)
        server_cpu_ms = env.figures.get(f"{key}_call_server_cpu_ms")
        if server_cpu_ms:
            section.add(
                cpu_name,
                server_cpu_ms / ledger_cpu_ms,
                "ratio",
                note="what the rate ratio comes to while one server process is the bottleneck",
            )


def measure(env: BenchEnv) -> Section:
    section = Section("Ledger over gRPC into PostgreSQL")
    with running_ledger(env) as ledger:
        target = ledger.target
        with open_channel(
            target, tls=tls_files(), default_timeout=120, token_source=MINT.token
        ) as channel:
            accounts = open_accounts(LedgerServiceStub(channel), clients=4)
        # Warm up connections, caches and the planner.
        measure_batches(target, accounts[:2], 1000, 2, 2, "warm")
        with ledger.cpu_cost() as cost:
            big = measure_batches(target, accounts[:2], 1000, 40, 2, "k")
        add_load(
            section,
            "batches of 1,000, one process",
            big,
            transfers_per_call=1000,
            clients=2,
            target=">= 20000",
            series="CreateTransfers x1000",
        )
        add_cpu(section, "batches of 1,000, one process", cost, big.calls, "1,000")
        mid = measure_batches(target, accounts, 100, 60, 8, "h")
        add_load(
            section,
            "batches of 100, one process",
            mid,
            transfers_per_call=100,
            clients=8,
            series="CreateTransfers x100",
        )
        with ledger.cpu_cost() as cost:
            one = measure_singles(target, accounts, "s")
        singles_rate = add_load(
            section,
            "single transfers (batch size 1), one process",
            one,
            transfers_per_call=1,
            clients=16,
            target=">= 1000",
            series="CreateTransfer (16 clients)",
        )
        ledger_ms = add_cpu(section, "single transfers, one process", cost, one.calls, "call")
        add_ceiling_ratios(section, env, singles_rate, ledger_ms)
    # The production shape (DESIGN.md §8): several server processes per host on one
    # port (SO_REUSEPORT), so more than one core runs Python. Each simulated client
    # has its own connection, which the kernel hands to one of the processes.
    with running_ledger(env, LEDGER_PROCESSES="2", LEDGER_GRPC_REUSE_PORT="true") as ledger:
        target = ledger.target
        with open_channel(
            target, tls=tls_files(), default_timeout=120, token_source=MINT.token
        ) as channel:
            accounts = open_accounts(LedgerServiceStub(channel), clients=6)
        measure_batches(target, accounts, 1000, 1, 6, "warm")
        with ledger.cpu_cost() as cost:
            scaled = measure_batches(target, accounts, 1000, 10, 6, "p")
        add_load(
            section,
            "batches of 1,000, two processes",
            scaled,
            transfers_per_call=1000,
            clients=6,
            target=">= 20000",
            series="CreateTransfers x1000 (2 processes)",
        )
        add_cpu(section, "batches of 1,000, two processes", cost, scaled.calls, "1,000")
        with ledger.cpu_cost() as cost:
            two = measure_singles(target, accounts, "t")
        add_load(
            section,
            "single transfers, two processes",
            two,
            transfers_per_call=1,
            clients=16,
            target=">= 1000",
            series="CreateTransfer (16 clients, 2 processes)",
        )
        add_cpu(section, "single transfers, two processes", cost, two.calls, "call")
    section.notes.append(
        "Each client owns its accounts (2,000 overdraft-protected accounts per client); "
        "batches sharing accounts would queue on row locks by design. Single transfers "
        "are grouped into shared commits by the ledger's batcher."
    )
    section.notes.append(
        "CPU per call or per 1,000 transfers: user and system time of the ledger's "
        "processes (with their workers), of the PostgreSQL backends serving its database, "
        "and of the load generator (this process), over the measured phase. All share the "
        "machine's cores."
    )
    return section


def main() -> None:
    from astra_testkit.postgres import PostgresServer

    from bench import ceilings

    env = BenchEnv(postgres=PostgresServer())
    try:
        started = time.perf_counter()
        sections = [ceilings.measure(env), measure(env)]
        for section in sections:
            print(f"## {section.title}")
            print_figures(section)
        print(f"took {time.perf_counter() - started:.0f}s")
    finally:
        env.close()


if __name__ == "__main__":
    main()
