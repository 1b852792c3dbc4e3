"""What sanctions screening costs payout creation: CreatePayout with screening on and off.

Two suites (identity, the ledger, payments, the sandbox bank as real processes on
fresh PostgreSQL databases) run side by side, identical but for
``PAYMENTS_SANCTIONS_LIST_FILE``: one screens every payee against a generated
list of ``BENCH_SANCTIONS_ENTRIES`` (10,000) SDN entries, the other has screening
off. Verified, funded customers create payouts to generated payee names with a
country (clean names close to listed ones); rounds alternate between the suites
(on, off, off, on, ...) so drift on this shared machine falls on both:
- one call in flight (``BENCH_SANCTIONS_SERIAL`` calls a round): CreatePayout p50/p99;
- 8 calls in flight (``BENCH_SANCTIONS_CONCURRENT`` calls a round): p50/p99;
each pooled over the rounds, and the difference on - off (the issue's aim: screening
and scoring together add at most 5 ms at p99). The matcher alone is timed too:
``Screener.screen`` over the same list in this process.

Run alone: ``python -m bench.run --only sanctions_cost`` or ``python -m bench.sanctions_cost``.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from astra.payments.v1 import payments_pb2 as pb
from astra_testkit.suite import running_suite
from screening.matcher import Screener
from screening.samples import COUNTRIES, evaluation_set, sample_list, write_sdn
from screening.sdn import load_sdn

from bench.common import BenchEnv, Section, percentile, print_figures
from bench.load import run_closed_loop
from bench.payments_bench import METHOD, Suite, prepare

ENTRIES = int(os.environ.get("BENCH_SANCTIONS_ENTRIES", "10000"))
# Many short rounds: drift on this shared machine (other processes come and go) falls on
# both suites alike.
ROUNDS = int(os.environ.get("BENCH_SANCTIONS_ROUNDS", "12"))
SERIAL = int(os.environ.get("BENCH_SANCTIONS_SERIAL", "100"))
CONCURRENT = int(os.environ.get("BENCH_SANCTIONS_CONCURRENT", "200"))
SEED = 20
VARIANTS = ("on", "off")


@contextmanager
def payments_suite(env: BenchEnv, folder: Path, sanctions_file: str, name: str) -> Iterator[Suite]:
    with running_suite(
        env.postgres,
        folder,
        name=name,
        log_level="WARNING",
        env={
            "payments": {
                "PAYMENTS_KYC_SUBSCRIBER_ENABLED": "false",
                "PAYMENTS_WORKER_POLL_SECONDS": "0.5",
                "PAYMENTS_SANCTIONS_LIST_FILE": sanctions_file,
            },
        },
    ) as suite:
        yield Suite(
            suite.identity, suite.payments, suite.database_urls["payments"], suite.admin_tokens()
        )


def payees(count: int) -> list[tuple[str, str]]:
    """Clean names close to listed ones (none is held, so both suites do the same work after
    creation): the matcher's real work, as hard as it gets short of a hit."""
    sample = sample_list(SEED, ENTRIES)
    names = [v.name for v in evaluation_set(sample, SEED + 7, 0, count)]
    rng = random.Random(SEED)
    return [(name, rng.choice(COUNTRIES)[1]) for name in names]


def payloads(
    prefix: str, customers: list[str], count: int, names: list[tuple[str, str]]
) -> list[bytes]:
    return [
        pb.CreatePayoutRequest(
            payment_id=f"{prefix}{i}",
            customer_id=customers[i % len(customers)],
            amount=1_000 + i % 100,
            currency="EUR",
            destination=pb.BankAccount(
                account_number="DE89370400440532013000",
                holder_name=names[i % len(names)][0],
                country=names[i % len(names)][1],
            ),
        ).SerializeToString()
        for i in range(count)
    ]


def matcher_latencies(
    sanctions_file: Path, names: list[tuple[str, str]]
) -> tuple[list[float], list[float]]:
    """Per screening: wall time, and this thread's CPU time (which a busy machine's other
    processes do not add to), in ms."""
    screener = Screener(load_sdn(sanctions_file), 90)
    wall, cpu = [], []
    for name, country in names:
        start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
        screener.screen(name, country)
        cpu.append((time.thread_time_ns() - start_cpu) / 1e6)
        wall.append((time.perf_counter_ns() - start) / 1e6)
    return wall, cpu


def measure(env: BenchEnv) -> Section:
    section = Section("Payments: sanctions screening's cost to payout creation (on / off)")
    folder = Path(tempfile.mkdtemp(prefix="astra-bench-sanctions-"))
    sanctions_file = write_sdn(sample_list(SEED, ENTRIES).entries, folder / "list")
    names = payees(2000)
    serial: dict[str, list[float]] = {v: [] for v in VARIANTS}
    concurrent: dict[str, list[float]] = {v: [] for v in VARIANTS}
    errors = 0
    with ExitStack() as stack:
        suites = {
            "on": stack.enter_context(
                payments_suite(env, folder / "on", str(sanctions_file), "bench_sdn_on")
            ),
            "off": stack.enter_context(payments_suite(env, folder / "off", "", "bench_sdn_off")),
        }
        tag = uuid.uuid4().hex[:6]
        customers = {v: prepare(suite, f"{tag}{v}") for v, suite in suites.items()}

        def create(variant: str, prefix: str, count: int, in_flight: int) -> list[float]:
            nonlocal errors
            suite = suites[variant]
            result = run_closed_loop(
                suite.payments,
                METHOD,
                payloads(prefix, customers[variant], count, names),
                concurrency=in_flight,
                metadata=[("authorization", f"Bearer {suite.tokens['payments']}")],
            )
            errors += result.errors
            return result.latencies_ms

        for variant in VARIANTS:  # warm-up: pools, prepared statements; not counted
            create(variant, f"pay_{tag}_{variant}_warm_", 100, 4)
        for round_ in range(ROUNDS):
            order = VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                prefix = f"pay_{tag}_{variant}_{round_}_"
                serial[variant] += create(variant, prefix + "s", SERIAL, 1)
                concurrent[variant] += create(variant, prefix + "c", CONCURRENT, 8)
    for load, samples in (("1 in flight", serial), ("8 in flight", concurrent)):
        for variant in VARIANTS:
            for p in (50, 99):
                section.add(
                    f"CreatePayout, {load}, screening {variant}: p{p}",
                    percentile(samples[variant], p),
                    "ms",
                )
            section.latencies_ms[f"CreatePayout, {load}, screening {variant}"] = samples[variant]
        for p in (50, 99):
            section.add(
                f"CreatePayout, {load}: screening on - off, p{p}",
                percentile(samples["on"], p) - percentile(samples["off"], p),
                "ms",
                "<= 5" if p == 99 else "",
            )
    wall, cpu = matcher_latencies(sanctions_file, names)
    for p in (50, 99):
        section.add(f"Screener.screen alone, {ENTRIES} entries: p{p}", percentile(wall, p), "ms")
    for p in (50, 99):
        section.add(
            f"Screener.screen alone, {ENTRIES} entries: CPU time p{p}", percentile(cpu, p), "ms"
        )
    if errors:
        section.notes.append(f"{errors} CreatePayout calls failed")
    section.notes.append(
        f"A generated list of {ENTRIES} entries (seed {SEED}); payees are clean names close to "
        "listed ones (another surname, a longer one, other given names), with a country. "
        f"{ROUNDS} alternating rounds per suite, pooled."
    )
    return section


def main() -> None:
    from astra_testkit.postgres import PostgresServer

    env = BenchEnv(postgres=PostgresServer())
    try:
        section = measure(env)
        print(f"## {section.title}")
        print_figures(section)
        for note in section.notes:
            print(note)
    finally:
        env.close()


if __name__ == "__main__":
    main()
