"""Spans collected in memory, and reading a Prometheus endpoint, for the observability tests."""

from __future__ import annotations

import io
import json
import logging
import sys
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import structlog
from chassis.logging import configure_logging
from chassis.tracing import configure_tracing
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families


class _CollectingExporter(InMemorySpanExporter):
    """Keeps spans only while a test collects them (the provider outlives every test)."""

    collecting = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self.collecting:
            return SpanExportResult.SUCCESS
        return super().export(spans)


# One exporter for the whole test process: the tracer provider can be installed only once.
_EXPORTER = _CollectingExporter()


@pytest.fixture
def collected_spans() -> Iterator[InMemorySpanExporter]:
    configure_tracing("tests", exporter=_EXPORTER)
    _EXPORTER.clear()
    _EXPORTER.collecting = True
    yield _EXPORTER
    _EXPORTER.collecting = False
    _EXPORTER.clear()


def spans_named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int, host: str = "127.0.0.1") -> Samples:
    """Every sample of a /metrics endpoint: (name, labels) -> value."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as reply:
        body = reply.read().decode("utf-8")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    """The value of the sample with this name and (at least) these labels, summed if several."""
    wanted = set(labels.items())
    found = [v for (n, have), v in samples.items() if n == name and wanted <= have]
    return sum(found) if found else None


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The suite's JSON log lines written so far in this test, parsed.

    Logging is configured to write into a buffer of the test's own (pytest's
    capture would close under the servers' threads), then set back.
    """
    buffer = io.StringIO()
    root_handlers = list(logging.getLogger().handlers)
    with monkeypatch.context() as patch:
        patch.setattr(sys, "stdout", buffer)
        configure_logging("tests", "INFO")

    def read() -> list[dict[str, Any]]:
        return [json.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]

    yield read
    structlog.reset_defaults()
    logging.getLogger().handlers[:] = root_handlers
