"""The README stays true: every setting is documented, every make target it names exists."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import env_reference  # noqa: E402


def test_every_environment_variable_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [
        name
        for _, settings in env_reference.SECTIONS
        for name, _, _ in env_reference.variables(settings)
        if f"`{name}`" not in readme
    ]
    assert missing == [], "run: python scripts/env_reference.py --write"


def test_every_setting_is_described() -> None:
    undescribed = [
        name
        for _, settings in env_reference.SECTIONS
        for name, _, meaning in env_reference.variables(settings)
        if not meaning
    ]
    assert undescribed == []


def test_make_targets_named_in_the_readme_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, re.MULTILINE))
    named = set(re.findall(r"`make ([a-z0-9-]+)", readme))
    assert named, "the README names its make targets"
    assert named - targets == set()


def test_metrics_named_in_the_operations_section_are_registered() -> None:
    import ledger.adapters.metrics  # noqa: F401  (registers the ledger's series)
    import payments.adapters.metrics  # noqa: F401  (registers the payments series)
    from prometheus_client import REGISTRY

    readme = (ROOT / "README.md").read_text()
    dashboards_and_alerts = readme[readme.index("### Dashboards") : readme.index("### Runbook")]
    # Label lists and selectors name labels, not series.
    without_labels = re.sub(r"by \([^)]*\)|\{[^}]*\}", "", dashboards_and_alerts)
    named = set(re.findall(r"\b[a-z]+(?:_[a-z0-9]+)+\b", without_labels))
    not_series = {"histogram_quantile", "dead_lettered"}  # a PromQL function, a label value
    # A labelled series has no samples until first used, so derive its names from the family.
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    registered = {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in suffixes.get(family.type, ("",))
    }
    assert len(named - not_series) >= 15
    assert named - not_series - registered == set()
