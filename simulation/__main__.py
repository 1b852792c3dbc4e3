"""``python -m simulation --seeds N [--first S] [--seed S] [--trace]``: run seeds, report.

Each seed is one run (``simulation.world``); a failing seed prints its violations
and the one command that replays it with a trace. Exit status 1 if any seed failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

import structlog

from simulation.world import run_seed


def _quiet() -> None:
    # The code under test logs what operators must see; a run's record is its event log.
    structlog.configure(
        processors=[lambda *_: (_ for _ in ()).throw(structlog.DropEvent)],
        cache_logger_on_first_use=True,
    )
    logging.disable(logging.CRITICAL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulation")
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    parser.add_argument("--first", type=int, default=1, help="the first seed")
    parser.add_argument("--seed", type=int, help="run this one seed")
    parser.add_argument("--trace", action="store_true", help="print the run's event log")
    parser.add_argument(
        "--until-failure", action="store_true", help="stop at the first seed that fails"
    )
    args = parser.parse_args(argv)
    _quiet()
    seeds: Sequence[int] = (
        [args.seed] if args.seed is not None else range(args.first, args.first + args.seeds)
    )
    failed = 0
    started = time.perf_counter()
    for count, seed in enumerate(seeds, start=1):
        world = run_seed(seed)
        sim = world.sim
        if args.trace:
            print("\n".join(sim.log))
        if sim.violations:
            failed += 1
            print(f"seed {seed}: {len(sim.violations)} violations")
            for violation in sim.violations[:10]:
                print(f"  {violation}")
            print(f"  replay: make simulate SEED={seed}")
            if args.until_failure:
                print(f"first failure after {count} seeds")
                seeds = seeds[:count]
                break
        elif args.seed is not None:
            print(f"seed {seed}: ok")
        if args.seed is not None or count % 1000 == 0:
            print(f"seed {seed} event log hash {sim.digest()}", flush=True)
    elapsed = time.perf_counter() - started
    ran = len(seeds)
    per_seed = 1000 * elapsed / max(ran, 1)
    print(f"{ran} seeds, {failed} failed, {elapsed:.1f} s ({per_seed:.1f} ms per seed)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
