"""What the hash-chained journal costs the ledger: the same loads with and without it.

Two ledger processes on two fresh databases, one as deployed (``astra-ledger serve``)
and one with the journal switched off (``bench.ledger_without_journal``, benchmark
only). Rounds alternate between them (with, without, with, ...), so drift on this
shared machine falls on both; each figure is the median of its rounds:
- batches of 1,000 (CreateTransfers), transfers/s, 2 clients;
- single transfers (CreateTransfer), calls/s, 16 clients, 5 s per round;
and the ratio with/without of each (1.0: the journal costs nothing; aim >= 0.9).
Beside the rates, the CPU each costs per 1,000 transfers (the ledger's process and
PostgreSQL's backends, ``bench.cpu``) and its ratio: a rate on this shared 2-core
machine moves with whatever else runs, CPU spent per transfer much less.

Run alone: ``python -m bench.run --only journal_cost``.
"""

from __future__ import annotations

import statistics
import sys

from astra.ledger.v1.ledger_pb2_grpc import LedgerServiceStub
from astra_testkit.tls import tls_files
from chassis.grpc.client import open_channel

from bench.common import MINT, BenchEnv, Section
from bench.cpu import CpuCost
from bench.ledger_bench import (
    measure_batches,
    measure_singles,
    open_accounts,
    running_ledger,
)

ROUNDS = 5
BATCH_CALLS_PER_CLIENT = 8
SINGLES_SECONDS = 5.0
WITHOUT = [sys.executable, "-m", "bench.ledger_without_journal", "serve"]


def measure(env: BenchEnv) -> Section:
    section = Section("Ledger: the journal's cost (same run, with and without)")
    rates: dict[str, dict[str, list[float]]] = {
        variant: {"batches": [], "singles": []} for variant in ("with", "without")
    }
    # CPU milliseconds per 1,000 transfers: the ledger's and PostgreSQL's, per round.
    cpu: dict[str, dict[str, list[tuple[float, float]]]] = {
        variant: {"batches": [], "singles": []} for variant in ("with", "without")
    }
    with running_ledger(env) as journaled, running_ledger(env, WITHOUT) as bare:
        ledgers = {"with": journaled, "without": bare}
        targets = {"with": journaled.target, "without": bare.target}
        accounts = {}
        for variant, target in targets.items():
            with open_channel(
                target, tls=tls_files(), default_timeout=120, token_source=MINT.token
            ) as channel:
                accounts[variant] = open_accounts(LedgerServiceStub(channel), clients=2)
            measure_batches(target, accounts[variant], 1000, 1, 2, "warm")
        for round_ in range(ROUNDS):
            order = ("with", "without") if round_ % 2 == 0 else ("without", "with")
            for variant in order:
                target, groups = targets[variant], accounts[variant]
                with ledgers[variant].cpu_cost() as cost:
                    big = measure_batches(
                        target, groups, 1000, BATCH_CALLS_PER_CLIENT, 2, f"k{round_}_"
                    )
                transfers = big.calls * 1000
                rates[variant]["batches"].append(transfers / big.seconds)
                cpu[variant]["batches"].append(_per_thousand(cost, transfers))
                with ledgers[variant].cpu_cost() as cost:
                    one = measure_singles(target, groups, f"s{round_}_", SINGLES_SECONDS)
                rates[variant]["singles"].append(one.calls / one.seconds)
                # The singles' warm-up (500 calls) runs inside the measured CPU too.
                cpu[variant]["singles"].append(_per_thousand(cost, one.calls + 500))
    for load, name, unit in (
        ("batches", "batches of 1,000 (2 clients)", "transfers/s"),
        ("singles", "single transfers (16 clients)", "transfers/s"),
    ):
        with_, without = (statistics.median(rates[v][load]) for v in ("with", "without"))
        section.add(f"{name}, with the journal: median", with_, unit)
        section.add(f"{name}, without the journal: median", without, unit)
        section.add(f"{name}: with / without", with_ / without, "ratio", ">= 0.9")
        spent = {
            variant: (
                statistics.median(ledger for ledger, _ in cpu[variant][load]),
                statistics.median(postgres for _, postgres in cpu[variant][load]),
            )
            for variant in ("with", "without")
        }
        for variant in ("with", "without"):
            ledger_ms, postgres_ms = spent[variant]
            section.add(
                f"{name}, {variant} the journal: ledger CPU per 1,000 transfers", ledger_ms, "ms"
            )
            section.add(
                f"{name}, {variant} the journal: PostgreSQL CPU per 1,000 transfers",
                postgres_ms,
                "ms",
            )
        section.add(
            f"{name}: CPU (ledger + PostgreSQL) per transfer, with / without",
            sum(spent["with"]) / sum(spent["without"]),
            "ratio",
            "<= 1.1",
        )
        for variant in ("with", "without"):
            rounds = ", ".join(f"{rate:.0f}" for rate in rates[variant][load])
            section.notes.append(f"{name}, {variant} the journal, per round: {rounds}")
    section.notes.append(
        "Without the journal: the same ledger with SqlLedgerRepository.journal_enabled "
        "switched off in its process (bench.ledger_without_journal, benchmark only)."
    )
    return section


def _per_thousand(cost: CpuCost, transfers: float) -> tuple[float, float]:
    """The ledger's and PostgreSQL's CPU milliseconds per 1,000 transfers."""
    return cost.server / transfers * 1e6, cost.postgres / transfers * 1e6
