"""The Makefile's .PHONY list names its targets: no more, no fewer."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_phony_names_exactly_the_targets_that_are_not_files() -> None:
    makefile = (ROOT / "Makefile").read_text()
    (phony,) = re.findall(r"^\.PHONY:(.*)$", makefile, re.MULTILINE)
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, re.MULTILINE))
    assert targets, "the Makefile has targets"
    assert set(phony.split()) == targets
