"""Every chassis server counts, times and traces its calls; logs join the trace.

A probe service on the real chassis server (no database needed): one method
that answers, one that refuses with a domain error, one that crashes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
import structlog
from astra_testkit.tls import tls_channel, tls_files
from chassis.grpc.client import open_channel
from chassis.grpc.interceptors import CallInterceptor
from chassis.grpc.server import GrpcServer, ServerOptions, ServiceBinding
from chassis.grpc.status import reason_of
from chassis.kernel.errors import NotFound
from chassis.metrics import serving_metrics
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.observability_fixtures import (
    sample,
    scrape,
    spans_named,
)

SERVICE = "astra.probe.v1.ObservedProbe"
_log = structlog.get_logger("probe")


def _identity(data: bytes) -> bytes:
    return data


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    _log.info("echoing", size=len(request))
    return request


def _missing(request: bytes, context: grpc.ServicerContext) -> bytes:
    raise NotFound("THING_NOT_FOUND", "no such thing")


def _crash(request: bytes, context: grpc.ServicerContext) -> bytes:
    raise RuntimeError("bug")


# Set by the client once it has the first message of a Ticks stream.
_FIRST_RECEIVED = threading.Event()


def _ticks(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    """A stream that can only go on once its first message reached the client (so the
    interceptors must send message by message), then ends refused mid-stream."""
    yield b"1"
    # The wait bounds a broken run only: a collected stream gets "late", not "2".
    yield b"2" if _FIRST_RECEIVED.wait(10) else b"late"
    raise NotFound("THING_NOT_FOUND", "no third tick")


def _register(server: grpc.Server) -> None:
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=_identity, response_serializer=_identity
        )
        for name, fn in (("Echo", _echo), ("Missing", _missing), ("Crash", _crash))
    }
    handlers["Ticks"] = grpc.unary_stream_rpc_method_handler(
        _ticks, request_deserializer=_identity, response_serializer=_identity
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


@pytest.fixture
def probe_port(collected_spans: InMemorySpanExporter) -> Iterator[int]:
    # collected_spans first: the server puts the tracing interceptor in front once tracing is on.
    server = GrpcServer(
        [ServiceBinding(SERVICE, _register)],
        ServerOptions(port=0, tls=tls_files("ledger")),
        interceptors=[CallInterceptor("probe.astra")],
    )
    port = server.start()
    yield port
    server.stop(0)


def _stub(channel: grpc.Channel, method: str) -> grpc.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(f"/{SERVICE}/{method}", _identity, _identity)


def _call(channel: grpc.Channel, method: str) -> grpc.StatusCode:
    try:
        _stub(channel, method)(b"ping")
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.OK


def test_calls_are_counted_by_method_and_code_timed_and_tracked_in_flight(
    probe_port: int,
) -> None:
    with serving_metrics("127.0.0.1", 0) as endpoint:
        before = scrape(endpoint.port)
        with tls_channel(f"127.0.0.1:{probe_port}") as channel:
            codes = [_call(channel, m) for m in ("Echo", "Echo", "Echo", "Missing", "Crash")]
        after = scrape(endpoint.port)
    assert codes == [grpc.StatusCode.OK] * 3 + [grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INTERNAL]

    def grew(name: str, **labels: str) -> float:
        return (sample(after, name, **labels) or 0) - (sample(before, name, **labels) or 0)

    handled = "grpc_server_handled_total"
    assert grew(handled, grpc_service=SERVICE, grpc_method="Echo", grpc_code="OK") == 3
    assert grew(handled, grpc_service=SERVICE, grpc_method="Missing", grpc_code="NOT_FOUND") == 1
    assert grew(handled, grpc_service=SERVICE, grpc_method="Crash", grpc_code="INTERNAL") == 1
    assert grew("grpc_server_handling_seconds_count", grpc_method="Echo") == 3
    assert grew("grpc_server_handling_seconds_sum", grpc_method="Echo") > 0
    # the +Inf bucket holds every call; the smallest bucket cannot hold more
    assert grew("grpc_server_handling_seconds_bucket", grpc_method="Echo", le="+Inf") == 3
    assert grew("grpc_server_handling_seconds_bucket", grpc_method="Echo", le="0.0005") <= 3
    assert sample(after, "grpc_server_in_flight_requests", grpc_method="Echo") == 0
    # health probes stay out of the figures
    assert sample(after, handled, grpc_service="grpc.health.v1.Health") is None


def test_one_trace_spans_client_and_server_and_refusals_are_not_server_errors(
    probe_port: int, collected_spans: InMemorySpanExporter
) -> None:
    channel = open_channel(f"127.0.0.1:{probe_port}", tls=tls_files())
    with trace.get_tracer("test").start_as_current_span("caller") as root:
        for method in ("Echo", "Missing", "Crash"):
            _call(channel, method)
    channel.close()
    trace_id = root.get_span_context().trace_id

    def of_kind(kind: trace.SpanKind, method: str) -> list[ReadableSpan]:
        return [s for s in spans_named(collected_spans, f"{SERVICE}/{method}") if s.kind is kind]

    servers = {m: of_kind(trace.SpanKind.SERVER, m) for m in ("Echo", "Missing", "Crash")}
    for method, (server_span,) in servers.items():
        (client,) = of_kind(trace.SpanKind.CLIENT, method)
        assert server_span.context.trace_id == trace_id
        assert client.context.trace_id == trace_id
        assert server_span.parent is not None
        assert server_span.parent.span_id == client.context.span_id
    codes = {m: s[0].attributes["rpc.grpc.status_code"] for m, s in servers.items()}  # type: ignore[index]
    assert codes == {"Echo": 0, "Missing": grpc.StatusCode.NOT_FOUND.value[0], "Crash": 13}
    assert servers["Echo"][0].status.is_ok
    assert servers["Missing"][0].status.is_unset  # a refusal is the service doing its job
    assert not servers["Crash"][0].status.is_ok
    assert not servers["Crash"][0].status.is_unset


def test_a_server_stream_is_sent_message_by_message_and_counted_traced_and_mapped(
    probe_port: int, collected_spans: InMemorySpanExporter
) -> None:
    _FIRST_RECEIVED.clear()
    with serving_metrics("127.0.0.1", 0) as endpoint:
        with tls_channel(f"127.0.0.1:{probe_port}") as channel:
            stream = iter(channel.unary_stream(f"/{SERVICE}/Ticks", _identity, _identity)(b""))
            first = next(stream)
            _FIRST_RECEIVED.set()
            second = next(stream)
            with pytest.raises(grpc.RpcError) as ended:
                next(stream)
        after = scrape(endpoint.port)
    assert (first, second) == (b"1", b"2")
    assert ended.value.code() is grpc.StatusCode.NOT_FOUND
    assert reason_of(ended.value) == "THING_NOT_FOUND"
    labels = {"grpc_service": SERVICE, "grpc_method": "Ticks"}
    assert sample(after, "grpc_server_handled_total", grpc_code="NOT_FOUND", **labels) == 1
    assert sample(after, "grpc_server_in_flight_requests", grpc_method="Ticks") == 0
    (span,) = [
        s
        for s in spans_named(collected_spans, f"{SERVICE}/Ticks")
        if s.kind is trace.SpanKind.SERVER
    ]
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]


def test_log_lines_of_a_call_carry_its_trace_request_id_service_and_method(
    json_logs: Callable[[], list[dict[str, Any]]], probe_port: int
) -> None:
    with tls_channel(f"127.0.0.1:{probe_port}") as channel:
        _stub(channel, "Echo")(b"x", metadata=(("x-request-id", "req-obs-1"),))
    ours = [line for line in json_logs() if line.get("request_id") == "req-obs-1"]
    assert {line["event"] for line in ours} >= {"echoing", "rpc"}
    for line in ours:
        assert line["service"] == "tests"
        assert line["method"] == f"/{SERVICE}/Echo"
        assert len(line["trace_id"]) == 32
    assert len({line["trace_id"] for line in ours}) == 1
