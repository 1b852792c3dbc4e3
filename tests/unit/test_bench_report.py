"""The benchmark report renderer, on made-up sections (nothing is measured here)."""

from __future__ import annotations

import struct
from pathlib import Path

from bench.common import Section
from bench.report import collect_environment, render_markdown, write_report


def _sections() -> list[Section]:
    ceilings = Section("Machine ceilings")
    ceilings.add("PostgreSQL commits (pgbench -N, 8 clients)", 2612.4, "commits/s")
    ceilings.latencies_ms["gRPC empty call"] = [0.5, 0.6, 0.7, 0.7, 0.8, 1.2, 3.0]
    ledger = Section("Ledger | gRPC")
    ledger.add("batches of 1,000", 18250.0, "transfers/s", target=">= 10,000")
    ledger.add("single transfers: p99", 42.0, "ms", target="<= 25", note="16 clients")
    ledger.latencies_ms["CreateTransfers x1000"] = [40.0 + i for i in range(50)]
    ledger.notes.append("one writer process")
    empty = Section("Outbox relay")
    return [ceilings, ledger, empty]


ENVIRONMENT = {"CPU": "Test CPU @ 2.0GHz", "cores": "2", "git commit": "abc123"}


def test_every_figure_appears_with_its_target_and_verdict() -> None:
    text = render_markdown(_sections(), ENVIRONMENT, "REPORT-latency.png")
    assert text.startswith("# Benchmark report\n")
    assert "3 sections, 3 figures; 1 of 2 targets met." in text
    assert "| CPU | Test CPU @ 2.0GHz |" in text
    assert "| PostgreSQL commits (pgbench -N, 8 clients) | 2,612 | commits/s |  |  |" in text
    assert "| batches of 1,000 | 18,250 | transfers/s | >= 10,000 | yes |" in text
    assert "| single transfers: p99 (16 clients) | 42.00 | ms | <= 25 | **no** |" in text
    assert "- single transfers: p99: 42.00 ms, target <= 25" in text
    assert "## Ledger \\| gRPC" not in text  # titles are headings, not cells
    assert "## Ledger | gRPC" in text
    assert "- one writer process" in text
    assert "## Outbox relay\n\nNo figures." in text
    assert "![latency distributions](REPORT-latency.png)" in text


def test_latency_series_are_summarised_by_percentiles() -> None:
    text = render_markdown(_sections(), ENVIRONMENT, None)
    assert "| CreateTransfers x1000 | 50 | 64.50 | 84.10 | 88.51 | 89.00 |" in text
    assert "latency distributions" not in text.lower().split("## environment")[1].split("##")[0]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_report_and_its_chart_are_written_side_by_side(tmp_path: Path) -> None:
    path = write_report(_sections(), tmp_path / "results" / "REPORT.md", ENVIRONMENT)
    assert path == tmp_path / "results" / "REPORT.md"
    chart = tmp_path / "results" / "REPORT-latency.png"
    width, height = _png_size(chart)
    assert width > 600
    assert height > 200
    assert "(REPORT-latency.png)" in path.read_text()


def test_no_chart_when_no_section_measured_latencies(tmp_path: Path) -> None:
    only_figures = Section("Ceilings")
    only_figures.add("cores", 2, "")
    path = write_report([only_figures], tmp_path / "REPORT.md", ENVIRONMENT)
    assert not (tmp_path / "REPORT-latency.png").exists()
    assert "![" not in path.read_text()


def test_the_environment_names_the_machine_and_the_versions() -> None:
    environment = collect_environment()
    for key in ("date (UTC)", "git commit", "CPU", "cores", "memory", "Python", "grpcio"):
        assert environment[key]
        assert environment[key] != "unknown", key


def test_multi_line_notes_keep_their_lines_in_a_text_block() -> None:
    failed = Section("bench.outbox_bench")
    note = "FAILED: Traceback (most recent call last):\n  File x\nValueError: boom"
    failed.notes.append(note + "\n")
    text = render_markdown([failed], ENVIRONMENT, None)
    assert f"```text\n{note}\n```" in text
