"""What every benchmark section shares: the environment it runs in and how it reports.

A section is a module with ``measure(env: BenchEnv) -> Section``. ``bench.run``
calls every section in one process, one after another, so that figures and
their ratios come from the same run on the same (shared, noisy) machine.
"""

from __future__ import annotations

import math
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from astra_testkit.postgres import PostgresServer
from astra_testkit.pubsub_emulator import PubSubEmulator
from astra_testkit.tls import tls_env
from chassis.auth.testing import TokenMint

RESULTS = Path(__file__).resolve().parent / "results"
# Calls carry real ES256 tokens, verified by the servers as in production; the
# servers read the public keys from a JWKS file instead of a running identity.
MINT = TokenMint()


@contextmanager
def mint_auth_env(prefix: str) -> Iterator[dict[str, str]]:
    """``<prefix>_AUTH_*`` settings that make a server trust MINT (a JWKS file, removed after),
    and ``<prefix>_TLS_*`` that make it serve mutual TLS with the suite CA's ledger certificate."""
    keys = Path(tempfile.mkdtemp(prefix="astra-bench-keys-"))
    try:
        yield {
            f"{prefix}_AUTH_ISSUER": MINT.issuer,
            f"{prefix}_AUTH_AUDIENCE": MINT.audience,
            f"{prefix}_AUTH_JWKS_FILE": str(MINT.write_jwks(keys / "jwks.json")),
            **tls_env(prefix, "ledger"),
        }
    finally:
        shutil.rmtree(keys, ignore_errors=True)


# The longest a section waits for PostgreSQL to finish an earlier section's work.
SETTLE_LIMIT_SECONDS = 60.0


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    # A target such as ">= 20000" or "<= 100"; empty when the figure is informative only.
    target: str = ""
    note: str = ""

    def met(self) -> bool | None:
        if not self.target:
            return None
        op, _, number = self.target.partition(" ")
        limit = float(number.replace(",", ""))
        return self.value >= limit if op == ">=" else self.value <= limit


@dataclass
class Section:
    title: str
    figures: list[Figure] = field(default_factory=list)
    # Latency samples in milliseconds, by series name, for the report's chart.
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, value: float, unit: str, target: str = "", note: str = "") -> Figure:
        figure = Figure(name, value, unit, target, note)
        self.figures.append(figure)
        return figure


@dataclass
class BenchEnv:
    postgres: PostgresServer
    # Started on first use by sections that need Pub/Sub.
    _emulator: PubSubEmulator | None = None
    # Figures of earlier sections, for ratios (e.g. "grpc.empty_calls_per_s").
    figures: dict[str, float] = field(default_factory=dict)

    def emulator(self) -> PubSubEmulator:
        if self._emulator is None:
            self._emulator = PubSubEmulator().start()
        return self._emulator

    def settle(self) -> str:
        """Let PostgreSQL finish the work an earlier section left it, before the next measures.

        A section that wrote millions of rows can leave dirty buffers and
        autovacuum runs behind it; their I/O falling into the next section's
        measured phase would be charged to that section. So the buffers are
        flushed now and running autovacuum workers are waited for. Usually
        little is left: dropping a section's database already forces a
        checkpoint. Returns what was done, for the notes.
        """
        started = time.perf_counter()
        with psycopg.connect(self.postgres.admin_url, autocommit=True) as conn:
            try:
                conn.execute("CHECKPOINT")
                checkpoint = "checkpoint"
            except psycopg.errors.InsufficientPrivilege:
                checkpoint = "no checkpoint (the bench's user may not)"
            workers = 0
            while time.perf_counter() - started < SETTLE_LIMIT_SECONDS:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
                ).fetchone()
                workers = row[0] if row else 0
                if not workers:
                    break
                time.sleep(0.5)
        waited = time.perf_counter() - started
        left = f", {workers} autovacuum workers still running" if workers else ""
        return f"{checkpoint}, {waited:.1f} s{left}"

    def close(self) -> None:
        if self._emulator is not None:
            self._emulator.stop()
            self._emulator = None
        self.postgres.drop_all()


def percentile(samples: list[float], p: float) -> float:
    """The p-th percentile (0-100) by the inclusive method; samples need not be sorted."""
    if not samples:
        return float("nan")
    if len(samples) == 1:
        return samples[0]
    return (
        statistics.quantiles(samples, n=100, method="inclusive")[int(p) - 1]
        if p < 100
        else max(samples)
    )


def format_number(value: float) -> str:
    """A figure as the report and the console show it: three significant digits or more."""
    if math.isnan(value):
        return "n/a"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 1:
        return f"{value:,.2f}"
    return f"{value:.3g}"


def print_figures(section: Section) -> None:
    """A section's figures on the console: ``make bench`` and each section run alone."""
    for figure in section.figures:
        met = figure.met()
        flag = "" if met is None else ("  [met]" if met else "  [MISSED]")
        value = format_number(figure.value)
        print(f"   {figure.name}: {value} {figure.unit} {figure.target}{flag}", flush=True)
