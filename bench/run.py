"""``make bench``: the machine's ceilings and every service's figures in one run, one report.

Sections run one after another in this process, so every ratio compares figures
taken minutes apart on the same machine. The report goes to
bench/results/REPORT.md with a PNG chart of latency distributions beside it.
Sections whose service is not installed are reported as skipped, never faked.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from collections.abc import Callable

from astra_testkit.postgres import PostgresServer

from bench.common import BenchEnv, Section, print_figures
from bench.report import REPORT_PATH, collect_environment, write_report

# In order: the ceilings first, so that later sections can compare against them.
SECTIONS = [
    "bench.ceilings",
    "bench.ledger_bench",
    "bench.journal_cost",
    "bench.outbox_bench",
    "bench.payments_bench",
    "bench.sanctions_cost",
    "bench.risk_bench",
]


def _load(module: str) -> Callable[[BenchEnv], Section] | None:
    try:
        return importlib.import_module(module).measure  # type: ignore[no-any-return]
    except ModuleNotFoundError as error:
        if error.name == module:
            return None
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument("--only", nargs="*", help="run only these sections (module names)")
    args = parser.parse_args(argv)
    env = BenchEnv(postgres=PostgresServer())
    env.postgres.require()
    sections: list[Section] = []
    failed = False
    started = time.perf_counter()
    try:
        for module in SECTIONS:
            if args.only and module not in args.only and module.split(".")[-1] not in args.only:
                continue
            measure = _load(module)
            if measure is None:
                skipped = Section(module)
                skipped.notes.append(f"{module} is not in this checkout: not measured")
                sections.append(skipped)
                continue
            print(f"== {module}", flush=True)
            settled = env.settle()
            section_started = time.perf_counter()
            try:
                section = measure(env)
            except Exception:
                failed = True
                section = Section(module)
                section.notes.append("FAILED: " + traceback.format_exc(limit=5))
                traceback.print_exc()
            section.notes.append(f"PostgreSQL settled before this section: {settled}")
            section.notes.append(f"measured in {time.perf_counter() - section_started:.0f} s")
            sections.append(section)
            print_figures(section)
        environment = collect_environment(env.postgres.admin_url)
        environment["benchmark wall time"] = f"{time.perf_counter() - started:.0f} s"
        path = write_report(sections, REPORT_PATH, environment)
        print(f"report: {path}")
    finally:
        env.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
