"""The committed generated code matches the protos, and the protos pass buf lint."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "libs/contracts/src/astra"


def test_generated_contracts_match_the_protos(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/generate_contracts.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = tmp_path / "astra"
    fresh_files = {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file()}
    committed_files = {
        p.relative_to(COMMITTED)
        for p in COMMITTED.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert fresh_files == committed_files, "run `make protos` and commit the result"
    drifted = [
        str(p)
        for p in sorted(fresh_files)
        if not filecmp.cmp(fresh / p, COMMITTED / p, shallow=False)
    ]
    assert drifted == [], "run `make protos` and commit the result"


def test_protos_pass_buf_lint() -> None:
    buf = Path(sys.executable).parent / "buf"
    result = subprocess.run(
        [str(buf), "lint"], cwd=ROOT / "protos", capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
