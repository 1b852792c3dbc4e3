"""Re-introduce a fixed defect on a scratch copy and let the simulation find it.

``python -m simulation.mutate <name> [--seeds N] [--first S]``: copies the
sources (libs/, services/, simulation/) to a temporary folder, applies
``simulation/mutations/<name>.patch`` there (never to the worktree), and runs
``python -m simulation --until-failure`` on the copy (its source folders first
on PYTHONPATH). Prints the first seed that catches the defect and after how
many seeds; exit status 0 when it was caught, 1 when it was not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTATIONS = Path(__file__).resolve().parent / "mutations"


def names() -> list[str]:
    return sorted(p.stem for p in MUTATIONS.glob("*.patch"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulation.mutate")
    parser.add_argument("name", choices=names())
    parser.add_argument("--seeds", type=int, default=2000)
    parser.add_argument("--first", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="astra-mutant-") as scratch:
        copy = Path(scratch)
        for part in ("libs", "services", "simulation"):
            shutil.copytree(
                ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        patch = MUTATIONS / f"{args.name}.patch"
        subprocess.run(["git", "apply", str(patch)], cwd=copy, check=True)
        sources = [copy / "libs" / "chassis" / "src", *sorted(copy.glob("services/*/src"))]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(copy), *map(str, sources)])}
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "simulation",
                "--until-failure",
                "--seeds",
                str(args.seeds),
                "--first",
                str(args.first),
            ],
            cwd=copy,
            env=env,
            check=False,
        )
    print(f"mutation {args.name}: {'caught' if result.returncode else 'NOT caught'}")
    return 0 if result.returncode else 1


if __name__ == "__main__":
    sys.exit(main())
