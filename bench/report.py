"""The benchmark report: every section of one ``make bench`` run in one Markdown file.

``write_report(sections, path)`` writes ``path`` (Markdown: the environment the
figures were measured in, then one table per section with each figure's
value, unit, target and whether the target was met, then the section's notes)
and, beside it, a PNG chart of the latency distributions the sections
collected (one box per series, log scale, p50/p99 marked), linked from the
Markdown. ``collect_environment`` records the machine and the software
versions; ``bench.run`` passes it the PostgreSQL the run used.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import matplotlib

# Files only, no display on servers and CI; chosen before pyplot is imported.
matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib import ticker

from bench.common import RESULTS, Figure, Section, percentile
from bench.common import format_number as _number

REPORT_PATH = RESULTS / "REPORT.md"
CHART_SUFFIX = "-latency.png"
_ROOT = Path(__file__).resolve().parent.parent


# --- the environment -----------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def _git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit} (uncommitted changes)" if dirty else commit


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def postgres_version(admin_url: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, connect_timeout=10) as connection:
        row = connection.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


def collect_environment(postgres_admin_url: str | None = None) -> dict[str, str]:
    """What a reader needs to compare these figures with others'."""
    environment = {
        "date (UTC)": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "git commit": _git_commit(),
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count() or "unknown"),
        "memory": _memory(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "grpcio": _version("grpcio"),
        "SQLAlchemy": _version("sqlalchemy"),
        "psycopg": _version("psycopg"),
        "google-cloud-pubsub": _version("google-cloud-pubsub"),
    }
    if postgres_admin_url:
        try:
            environment["PostgreSQL"] = postgres_version(postgres_admin_url)
        except Exception as error:
            environment["PostgreSQL"] = f"unknown ({type(error).__name__})"
    return environment


# --- Markdown ------------------------------------------------------------------


def _met(figure: Figure) -> str:
    met = figure.met()
    if met is None:
        return ""
    return "yes" if met else "**no**"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _section_markdown(section: Section) -> list[str]:
    lines = [f"## {section.title}", ""]
    if section.figures:
        lines += [
            "| figure | value | unit | target | met? |",
            "|---|---:|---|---|---|",
        ]
        for figure in section.figures:
            name = figure.name + (f" ({figure.note})" if figure.note else "")
            lines.append(
                f"| {_cell(name)} | {_number(figure.value)} | {_cell(figure.unit)} "
                f"| {_cell(figure.target)} | {_met(figure)} |"
            )
        lines.append("")
    else:
        lines += ["No figures.", ""]
    if section.latencies_ms:
        lines += ["| latency series | samples | p50 ms | p90 ms | p99 ms | max ms |"]
        lines += ["|---|---:|---:|---:|---:|---:|"]
        for series, samples in section.latencies_ms.items():
            lines.append(
                f"| {_cell(series)} | {len(samples):,} | {_number(percentile(samples, 50))} "
                f"| {_number(percentile(samples, 90))} | {_number(percentile(samples, 99))} "
                f"| {_number(max(samples) if samples else math.nan)} |"
            )
        lines.append("")
    for note in section.notes:
        if "\n" in note:  # a traceback or command output: keep its lines as they are
            lines += ["```text", note.rstrip("\n"), "```"]
        else:
            lines.append(f"- {note}")
    if section.notes:
        lines.append("")
    return lines


def render_markdown(
    sections: Sequence[Section], environment: Mapping[str, str], chart_name: str | None
) -> str:
    figures = [f for s in sections for f in s.figures]
    targeted = [f for f in figures if f.met() is not None]
    missed = [f for f in targeted if f.met() is False]
    lines = [
        "# Benchmark report",
        "",
        f"{len(sections)} sections, {len(figures)} figures; "
        f"{len(targeted) - len(missed)} of {len(targeted)} targets met.",
        "",
        "## Environment",
        "",
        "| | |",
        "|---|---|",
        *(f"| {_cell(key)} | {_cell(value)} |" for key, value in environment.items()),
        "",
    ]
    if missed:
        lines += ["Targets missed:", ""]
        lines += [f"- {f.name}: {_number(f.value)} {f.unit}, target {f.target}" for f in missed]
        lines.append("")
    if chart_name:
        lines += ["## Latency distributions", "", f"![latency distributions]({chart_name})", ""]
    for section in sections:
        lines += _section_markdown(section)
    return "\n".join(lines).rstrip() + "\n"


# --- the chart -------------------------------------------------------------------


def _series(sections: Sequence[Section]) -> list[tuple[str, list[float]]]:
    return [
        (f"{section.title}: {name}", [v for v in samples if v > 0])
        for section in sections
        for name, samples in section.latencies_ms.items()
        if any(v > 0 for v in samples)
    ]


def render_chart(sections: Sequence[Section], path: Path) -> bool:
    """A box per latency series (whiskers p1..p99), log scale; False when none has samples."""
    series = _series(sections)
    if not series:
        return False
    height = max(3.0, 0.55 * len(series) + 1.5)
    figure, axes = plt.subplots(figsize=(11, height))
    try:
        axes.boxplot(
            [samples for _, samples in series],
            orientation="horizontal",
            whis=(1, 99),
            showfliers=False,
            widths=0.6,
        )
        for row, (_, samples) in enumerate(series, start=1):
            p99 = percentile(samples, 99)
            axes.plot([p99], [row], marker="|", markersize=14, color="crimson")
            axes.annotate(
                f"p50 {_number(percentile(samples, 50))} / p99 {_number(p99)} ms",
                (p99, row),
                xytext=(6, 6),
                textcoords="offset points",
                fontsize=8,
            )
        axes.set_yticks(range(1, len(series) + 1), [name for name, _ in series], fontsize=8)
        axes.invert_yaxis()  # first section on top, as in the Markdown
        axes.set_xscale("log")
        # Plain numbers on the log axis (1, 2, 5, 10 ms), and room on the right for the labels.
        axes.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _p: f"{v:g}"))
        axes.xaxis.set_minor_formatter(
            ticker.FuncFormatter(lambda v, _p: f"{v:g}" if f"{v:g}"[0] in "25" else "")
        )
        axes.tick_params(axis="x", which="minor", labelsize=7)
        low = min(percentile(samples, 1) for _, samples in series)
        high = max(percentile(samples, 99) for _, samples in series)
        axes.set_xlim(low / 1.5, high * 4)
        axes.set_xlabel("latency per call, ms (log scale; box p25-p75, whiskers p1-p99)")
        axes.set_title("Latency distributions")
        axes.grid(axis="x", which="both", alpha=0.3)
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110)
    finally:
        plt.close(figure)
    return True


def write_report(
    sections: Sequence[Section],
    path: Path = REPORT_PATH,
    environment: Mapping[str, str] | None = None,
) -> Path:
    """Write the Markdown report to ``path`` and its chart beside it; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    chart = path.with_name(path.stem + CHART_SUFFIX)
    has_chart = render_chart(sections, chart)
    if not has_chart:
        chart.unlink(missing_ok=True)
    text = render_markdown(
        sections,
        environment if environment is not None else collect_environment(),
        chart.name if has_chart else None,
    )
    path.write_text(text, encoding="utf-8")
    return path
