"""The code standards, checked where CI runs: ruff (lint and format) and mypy (strict)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_finds_nothing() -> None:
    result = run(str(BIN / "ruff"), "check", "--output-format", "concise", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_code_is_formatted() -> None:
    result = run(str(BIN / "ruff"), "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    sources = [str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("services/*/src"))]
    result = run(
        str(BIN / "mypy"),
        "libs/chassis/src",
        "libs/screening/src",
        "libs/testkit/src",
        *sources,
        "scripts",
        "tests",
        "bench",
        "simulation",
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr
