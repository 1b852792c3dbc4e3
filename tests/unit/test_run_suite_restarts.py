"""How long ``make run`` waits before starting a dead process again (no I/O)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from run_suite import RESTART_MAX_SECONDS, STABLE_AFTER_SECONDS, next_restart


def test_the_pause_doubles_while_a_process_keeps_dying_young_up_to_a_cap() -> None:
    quick_deaths, pauses = 0, []
    for _ in range(8):
        pause, quick_deaths = next_restart(quick_deaths, lived_seconds=0.5)
        pauses.append(pause)
    assert pauses == [1, 2, 4, 8, 16, RESTART_MAX_SECONDS, RESTART_MAX_SECONDS, RESTART_MAX_SECONDS]


def test_a_process_that_stayed_up_starts_again_from_the_first_pause() -> None:
    assert next_restart(7, lived_seconds=STABLE_AFTER_SECONDS) == (1, 1)
    assert next_restart(7, lived_seconds=STABLE_AFTER_SECONDS - 0.1) == (RESTART_MAX_SECONDS, 8)
