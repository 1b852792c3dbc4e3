"""OpenTelemetry traces across gRPC hops, HTTP calls and Pub/Sub messages.

``configure_tracing`` installs the SDK's tracer provider once per process.
Which exporter follows ``OTEL_TRACES_EXPORTER``:

- ``none`` (the default): nothing is exported and nothing is recorded, but
  every call still gets a trace id that travels to the next hop, so logs of one
  request can be joined across services by ``trace_id``;
- ``otlp``: OTLP over HTTP/protobuf to ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the
  exporter's own variables apply), sampled by the SDK's ``OTEL_TRACES_SAMPLER``
  (default: follow the parent, record new roots);
- ``console``: spans as JSON on stderr, for a look on a laptop.

Trace context crosses gRPC in the ``traceparent`` metadata (W3C Trace Context),
HTTP in the same header, and Pub/Sub in the ``ce-traceparent`` attribute (the
CloudEvents distributed-tracing extension in the binary Pub/Sub binding the
suite's events follow).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider, sampling
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import SpanKind

_log = structlog.get_logger("chassis.tracing")

EXPORTER_ENV = "OTEL_TRACES_EXPORTER"
EXPORTERS = ("none", "otlp", "console")
INSTRUMENTATION = "astra.chassis"
# CloudEvents' distributed-tracing extension attributes, as the Pub/Sub binding names them.
PUBSUB_ATTRIBUTE_PREFIX = "ce-"
_TRACE_FIELDS = ("traceparent", "tracestate")
_TRACEPARENT_ATTRIBUTE = PUBSUB_ATTRIBUTE_PREFIX + "traceparent"

_lock = threading.Lock()
_provider: TracerProvider | None = None
_added_exporters: set[int] = set()


def configure_tracing(service: str, exporter: SpanExporter | None = None) -> TracerProvider:
    """Install the process' tracer provider (once); ``exporter`` overrides the environment.

    A later call with an exporter adds it to the provider already installed
    (tests collect spans in memory this way); the sampler stays as first chosen.
    """
    global _provider
    with _lock:
        if _provider is not None:
            if exporter is not None:
                if not _records(_provider):
                    raise RuntimeError(
                        "tracing was configured without an exporter in this process; "
                        "configure the exporter first"
                    )
                if id(exporter) not in _added_exporters:
                    _provider.add_span_processor(SimpleSpanProcessor(exporter))
                    _added_exporters.add(id(exporter))
            return _provider
        processor = _processor(exporter)
        attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service}
        provider = TracerProvider(
            resource=Resource.create(attributes),
            # ids only, nothing recorded, when nothing is exported: cheap on the hot path
            sampler=None if processor is not None else sampling.ALWAYS_OFF,
        )
        if processor is not None:
            provider.add_span_processor(processor)
        if exporter is not None:
            _added_exporters.add(id(exporter))
        trace.set_tracer_provider(provider)
        _instrument_httpx(provider)
        _provider = provider
        _log.info("tracing configured", exporter=_exporter_name(exporter))
        return provider


def _records(provider: TracerProvider) -> bool:
    return provider.sampler is not sampling.ALWAYS_OFF


def _exporter_name(exporter: SpanExporter | None) -> str:
    if exporter is not None:
        return type(exporter).__name__
    return os.environ.get(EXPORTER_ENV, "none").strip().lower() or "none"


def _processor(exporter: SpanExporter | None) -> SpanProcessor | None:
    if exporter is not None:
        return SimpleSpanProcessor(exporter)
    name = _exporter_name(None)
    if name == "none":
        return None
    if name == "console":
        return SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr))
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return BatchSpanProcessor(OTLPSpanExporter())
    raise ValueError(f"{EXPORTER_ENV}={name!r}: expected one of {', '.join(EXPORTERS)}")


def _instrument_httpx(provider: TracerProvider) -> None:
    """Every httpx client (the bank gateway's) makes a client span and sends ``traceparent``."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    instrumentor = HTTPXClientInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider)


def tracing_configured() -> bool:
    return _provider is not None


_tracers: dict[int, trace.Tracer] = {}


def tracer() -> trace.Tracer:
    """The chassis' tracer from the current provider (made once per provider, not per call)."""
    provider = trace.get_tracer_provider()
    found = _tracers.get(id(provider))
    if found is None:
        found = _tracers[id(provider)] = provider.get_tracer(INSTRUMENTATION)
    return found


def current_trace_id() -> str | None:
    """The current trace id as 32 hex digits, or None outside any trace."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


# --- Pub/Sub --------------------------------------------------------------------


def inject_trace_context() -> dict[str, str]:
    """Trace context of the current span as Pub/Sub message attributes (empty outside a trace).

    Call it where an event is recorded (inside the request that caused it) and
    store the result with the event; the relay publishes it as attributes.
    """
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {
        PUBSUB_ATTRIBUTE_PREFIX + key: value
        for key, value in carrier.items()
        if key in _TRACE_FIELDS
    }


def sampled_trace_context() -> dict[str, str]:
    """``inject_trace_context()`` when the current trace is recorded, else nothing.

    What the outbox stores: a trace nobody records is not worth a column of
    bytes on every event of a 1,000-transfer batch.
    """
    span_context = trace.get_current_span().get_span_context()
    if not (span_context.is_valid and span_context.trace_flags.sampled):
        return {}
    return inject_trace_context()


_NO_CONTEXT = otel_context.Context()


def extract_trace_context(attributes: Mapping[str, str]) -> otel_context.Context:
    """The context a message's attributes carry (an empty one when they carry none)."""
    if _TRACEPARENT_ATTRIBUTE not in attributes:
        # Most messages carry none (only recorded traces are stored with events):
        # the propagator's parsing is skipped for them.
        return _NO_CONTEXT
    carrier = {
        key[len(PUBSUB_ATTRIBUTE_PREFIX) :]: value
        for key, value in attributes.items()
        if key.startswith(PUBSUB_ATTRIBUTE_PREFIX)
        and key[len(PUBSUB_ATTRIBUTE_PREFIX) :] in _TRACE_FIELDS
    }
    return propagate.extract(carrier)


@contextmanager
def consumer_span(
    subscription: str, attributes: Mapping[str, str], event_type: str = ""
) -> Iterator[trace.Span]:
    """The span a subscriber handles one message in, child of the span that recorded it."""
    with tracer().start_as_current_span(
        f"{subscription} process",
        context=extract_trace_context(attributes),
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "gcp_pubsub",
            "messaging.operation": "process",
            "messaging.destination.subscription.name": subscription,
            "messaging.message.id": attributes.get("ce-id", ""),
            "cloudevents.event_type": event_type or attributes.get("ce-type", ""),
        },
    ) as span:
        yield span


# --- work that outlives its request ---------------------------------------------


def current_traceparent() -> str:
    """The current trace as a W3C ``traceparent`` value to store with work done later ("")."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")


@contextmanager
def resumed_span(traceparent: str, name: str, **attributes: str) -> Iterator[trace.Span]:
    """A span continuing the trace stored with a piece of work (a new trace when none was)."""
    parent = propagate.extract({"traceparent": traceparent}) if traceparent else None
    with tracer().start_as_current_span(name, context=parent, attributes=attributes) as span:
        yield span


@contextmanager
def batch_span(name: str, traceparents: Sequence[str], **attributes: Any) -> Iterator[trace.Span]:
    """A span for one call made on behalf of many stored pieces of work.

    It continues the first one's trace (so a lone payout stays one trace) and
    links every other one, so each of their traces can still find it.
    """
    contexts = [
        trace.get_current_span(propagate.extract({"traceparent": t})).get_span_context()
        for t in dict.fromkeys(traceparents)
        if t
    ]
    contexts = [c for c in contexts if c.is_valid]
    parent = trace.set_span_in_context(trace.NonRecordingSpan(contexts[0])) if contexts else None
    with tracer().start_as_current_span(
        name,
        context=parent,
        links=[trace.Link(c) for c in contexts[1:]],
        attributes=attributes,
    ) as span:
        yield span
