"""What the hash-chained journal costs the ledger: the same loads with and without it.

Two ledger processes on two fresh databases, one as deployed (``astra-ledger serve``)
and one with the journal switched off (``bench.ledger_without_journal``, benchmark
only). Rounds alternate between them (with, without, with, ...), so drift on this
shared machine falls on both; each figure is the median of its rounds:
- batches of 1,000 (CreateTransfers), transfers/s, 2 clients;
- single transfers (CreateTransfer), calls/s, 16 clients, 5 s per round;
and the ratio with/without of each (1.0: the journal costs nothing; aim >= 0.9).

Run alone: ``python -m bench.run --only journal_cost``.
"""

from __future__ import annotations

import statistics
import sys

from astra.ledger.v1.ledger_pb2_grpc import LedgerServiceStub
from astra_testkit.tls import tls_files
from chassis.grpc.client import open_channel

from bench.common import MINT, BenchEnv, Section
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
    with running_ledger(env) as journaled, running_ledger(env, WITHOUT) as bare:
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
                big = measure_batches(
                    target, groups, 1000, BATCH_CALLS_PER_CLIENT, 2, f"k{round_}_"
                )
                rates[variant]["batches"].append(big.calls * 1000 / big.seconds)
                one = measure_singles(target, groups, f"s{round_}_", SINGLES_SECONDS)
                rates[variant]["singles"].append(one.calls / one.seconds)
    for load, name, unit in (
        ("batches", "batches of 1,000 (2 clients)", "transfers/s"),
        ("singles", "single transfers (16 clients)", "transfers/s"),
    ):
        with_, without = (statistics.median(rates[v][load]) for v in ("with", "without"))
        section.add(f"{name}, with the journal: median", with_, unit)
        section.add(f"{name}, without the journal: median", without, unit)
        section.add(f"{name}: with / without", with_ / without, "ratio", ">= 0.9")
        for variant in ("with", "without"):
            rounds = ", ".join(f"{rate:.0f}" for rate in rates[variant][load])
            section.notes.append(f"{name}, {variant} the journal, per round: {rounds}")
    section.notes.append(
        "Without the journal: the same ledger with SqlLedgerRepository.journal_enabled "
        "switched off in its process (bench.ledger_without_journal, benchmark only)."
    )
    return section
