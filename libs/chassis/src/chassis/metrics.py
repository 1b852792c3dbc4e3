"""Prometheus metrics every service shares, and the HTTP endpoint that serves them.

The families here are the chassis' own (gRPC server calls, the outbox, calls to
outside dependencies such as the bank); a context adds its own families in its
own package, with the helpers below so that multiprocess aggregation is right.

Several processes on one port (``<SERVICE>_PROCESSES`` > 1, see
``chassis.multiprocess``) use prometheus-client's multiprocess mode: each
process writes its samples to files under ``PROMETHEUS_MULTIPROC_DIR`` and the
supervising process serves the sum on the one metrics port, so a scrape sees
the service, not one random process behind ``SO_REUSEPORT``. That is why every
gauge here is set by the process that knows the value (never computed at
scrape time by a callback) and declares how processes combine.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import grpc
import structlog
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.multiprocess import MultiProcessCollector

from chassis.background import Periodic

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

_log = structlog.get_logger("chassis.metrics")

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

GaugeMode = Literal["livesum", "livemax", "livemostrecent", "liveall"]

# Latency buckets from half a millisecond (an in-memory call) to ten seconds
# (a bank call at the end of its retry budget).
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_DIR_ENV))


def counter(name: str, documentation: str, labels: Iterable[str] = ()) -> Counter:
    return Counter(name, documentation, list(labels))


def histogram(
    name: str,
    documentation: str,
    labels: Iterable[str] = (),
    buckets: tuple[float, ...] = LATENCY_BUCKETS,
) -> Histogram:
    return Histogram(name, documentation, list(labels), buckets=buckets)


def gauge(name: str, documentation: str, labels: Iterable[str] = (), *, mode: GaugeMode) -> Gauge:
    """A gauge and how several processes of one service combine it.

    ``livesum`` for amounts each process holds (calls in flight), ``livemax``
    for states where the worst process matters (an open breaker), and
    ``livemostrecent`` for facts every process samples from the same database
    (outbox backlog, payments by state).
    """
    return Gauge(name, documentation, list(labels), multiprocess_mode=mode)


# --- gRPC server ------------------------------------------------------------

GRPC_HANDLED = counter(
    "grpc_server_handled_total",
    "gRPC calls completed on the server, by method and status code",
    ("grpc_service", "grpc_method", "grpc_code"),
)
GRPC_HANDLING_SECONDS = histogram(
    "grpc_server_handling_seconds",
    "Time the server took to complete a gRPC call",
    ("grpc_service", "grpc_method"),
)
GRPC_IN_FLIGHT = gauge(
    "grpc_server_in_flight_requests",
    "gRPC calls the server is handling right now",
    ("grpc_service", "grpc_method"),
    mode="livesum",
)


def split_method(full_method: str) -> tuple[str, str]:
    """``/astra.ledger.v1.LedgerService/CreateTransfer`` -> (service, method)."""
    service, _, method = full_method.lstrip("/").partition("/")
    return service, method


def status_code_of(context: grpc.ServicerContext, failed: bool) -> grpc.StatusCode:
    """The status a finished call carries: what the handler set or aborted with."""
    code_of = getattr(context, "code", None)
    code = code_of() if callable(code_of) else None
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK


# --- the outbox and its relay ----------------------------------------------

OUTBOX_BACKLOG = gauge(
    "outbox_backlog_messages",
    "Events written to the outbox and not yet acknowledged by Pub/Sub",
    ("context",),
    mode="livemostrecent",
)
OUTBOX_OLDEST_AGE = gauge(
    "outbox_oldest_unpublished_age_seconds",
    "Age of the oldest event not yet published (0 when none waits)",
    ("context",),
    mode="livemostrecent",
)
OUTBOX_PUBLISHED = counter(
    "outbox_published_total",
    "Events the relay published and Pub/Sub acknowledged",
    ("context",),
)
OUTBOX_RELAY_FAILURES = counter(
    "outbox_relay_failures_total",
    "Relay rounds that failed (Pub/Sub or the database) and will be tried again",
    ("context",),
)


EVENTS_HANDLED = counter(
    "events_handled_total",
    "Events a subscriber took from Pub/Sub, by subscription and outcome",
    ("subscription", "outcome"),
)


@dataclass(frozen=True)
class OutboxBacklog:
    messages: int
    oldest_age_seconds: float


def declare_outbox_series(context: str) -> None:
    """Show a relay's counters at 0 from the start: alerts on rates need the series to exist."""
    OUTBOX_PUBLISHED.labels(context)
    OUTBOX_RELAY_FAILURES.labels(context)


def record_outbox_backlog(context: str, backlog: OutboxBacklog) -> None:
    OUTBOX_BACKLOG.labels(context).set(backlog.messages)
    OUTBOX_OLDEST_AGE.labels(context).set(backlog.oldest_age_seconds)


# --- calls to outside dependencies (the bank) --------------------------------

DEPENDENCY_ATTEMPTS = counter(
    "dependency_call_attempts_total",
    "Single requests sent to an outside dependency, by what came back",
    ("dependency", "operation", "result"),
)
DEPENDENCY_RETRIES = counter(
    "dependency_call_retries_total",
    "Requests sent again after a transient failure",
    ("dependency", "operation"),
)
DEPENDENCY_OUTCOMES = counter(
    "dependency_call_outcomes_total",
    "Calls to an outside dependency after all their attempts, by outcome",
    ("dependency", "operation", "outcome"),
)
DEPENDENCY_SECONDS = histogram(
    "dependency_call_seconds",
    "Time of one request to an outside dependency",
    ("dependency", "operation"),
)
BREAKER_STATE = gauge(
    "circuit_breaker_state",
    "Circuit breaker state: 0 closed, 1 half-open, 2 open",
    ("breaker",),
    mode="livemax",
)
BREAKER_STATES = {"closed": 0, "half-open": 1, "half_open": 1, "open": 2}


def record_breaker_state(breaker: str, state: str) -> None:
    BREAKER_STATE.labels(breaker).set(BREAKER_STATES[state.lower()])


# --- periodic sampling ------------------------------------------------------


class Sampler(Periodic):
    """Runs ``sample`` now and then every ``interval`` seconds on a daemon thread.

    For gauges read from the database (backlog, payments by state): computing
    them at scrape time cannot work across processes, so they are kept fresh.
    """

    def __init__(self, name: str, sample: Callable[[], None], interval: float = 5.0) -> None:
        super().__init__(f"sampler-{name}", sample, interval, at_start=True)
        self._sampler = name

    def failed(self) -> None:
        _log.warning("metrics sample failed; will try again", sampler=self._sampler)


# --- the HTTP endpoint --------------------------------------------------------


def scrape_registry() -> CollectorRegistry:
    """What a scrape of this process should see: its own registry, or all processes'."""
    if multiprocess_enabled():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


class MetricsServer:
    """``/metrics`` over HTTP on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry | None = None) -> None:
        self._host = host
        self._requested_port = port
        self._registry = registry
        self._httpd: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self) -> int:
        registry = self._registry or scrape_registry()
        self._httpd, self._thread = start_http_server(
            self._requested_port, addr=self._host, registry=registry
        )
        self.port = int(self._httpd.server_port)
        _log.info("metrics serving", address=f"{self._host}:{self.port}")
        return self.port

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


class _Stoppable(Protocol):
    def on_stop(self, hook: Callable[[], None]) -> None: ...


def serve_metrics(server: _Stoppable, host: str, port: int) -> MetricsServer | None:
    """Serve ``/metrics`` beside a gRPC server until it stops; port 0 means no endpoint.

    The supervisor of several processes serves their sum itself and starts its
    children with port 0 (see ``chassis.multiprocess``).
    """
    if port == 0:
        return None
    metrics = MetricsServer(host, port)
    metrics.start()
    server.on_stop(metrics.stop)
    return metrics


@contextmanager
def serving_metrics(host: str, port: int) -> Iterator[MetricsServer]:
    """``/metrics`` for the length of a with-block (port 0 picks a free one)."""
    server = MetricsServer(host, port)
    server.start()
    try:
        yield server
    finally:
        server.stop()
