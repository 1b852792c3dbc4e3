"""Metrics and traces of gRPC calls: the interceptors every server and channel carries.

They sit here, beside the other interceptors, rather than in ``chassis.metrics``
and ``chassis.tracing``: those know nothing of the gRPC plumbing, so the
dependency runs one way (``chassis.grpc`` uses them).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode

from chassis.grpc.bases import ClientCallDetails, UnaryStreamClientBase, UnaryUnaryClientBase
from chassis.grpc.interceptors import MethodInterceptor, wrap_handler
from chassis.metrics import (
    GRPC_HANDLED,
    GRPC_HANDLING_SECONDS,
    GRPC_IN_FLIGHT,
    split_method,
    status_code_of,
)
from chassis.tracing import tracer, tracing_configured

# Server statuses that mean the server failed (OpenTelemetry's gRPC conventions);
# a refusal such as FAILED_PRECONDITION is the service doing its job.
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class MetricsInterceptor(MethodInterceptor):
    """Counts, times and tracks in-flight calls of every application method.

    Health checks and reflection are left out: probes would drown the figures.
    """

    def wrap(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        service, name = split_method(method)
        in_flight = GRPC_IN_FLIGHT.labels(service, name)
        latency = GRPC_HANDLING_SECONDS.labels(service, name)

        @contextlib.contextmanager
        def measuring(ctx: Any) -> Iterator[list[bool]]:
            in_flight.inc()
            started = time.perf_counter()
            failed = [True]  # the body clears it when it returns
            try:
                yield failed
            finally:
                latency.observe(time.perf_counter() - started)
                in_flight.dec()
                GRPC_HANDLED.labels(service, name, status_code_of(ctx, failed[0]).name).inc()

        def measured(behaviour: Callable[..., Any], request: Any, ctx: Any) -> Any:
            with measuring(ctx) as failed:
                result = behaviour(request, ctx)
                failed[0] = False
                return result

        def measured_stream(behaviour: Callable[..., Any], request: Any, ctx: Any) -> Any:
            # The whole stream, message by message (a follower may stream for hours).
            def generate() -> Iterator[Any]:
                with measuring(ctx) as failed:
                    yield from behaviour(request, ctx)
                    failed[0] = False

            return generate()

        return wrap_handler(handler, measured, measured_stream)


class TracingServerInterceptor(MethodInterceptor):
    """A server span per call, child of the caller's ``traceparent``.

    Our own rather than opentelemetry-instrumentation-grpc's server interceptor:
    that one ignores ``abort_with_status``, which is how every refusal leaves
    our servers (rich error details), so its spans would call them all OK.
    """

    def wrap(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        service, name = split_method(method)
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}

        @contextlib.contextmanager
        def tracing(ctx: grpc.ServicerContext) -> Iterator[list[bool]]:
            carrier = {k: v for k, v in (ctx.invocation_metadata() or ()) if isinstance(v, str)}
            # No trace context sent: a new root, without parsing anything.
            parent = propagate.extract(carrier) if "traceparent" in carrier else None
            with tracer().start_as_current_span(
                method.lstrip("/"),
                context=parent,
                kind=SpanKind.SERVER,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                failed = [True]  # the body clears it when it returns
                try:
                    yield failed
                except Exception as error:
                    # grpc's abort raises a bare Exception: not worth recording.
                    if type(error) is not Exception:
                        span.record_exception(error)
                    raise
                finally:
                    code = status_code_of(ctx, failed[0])
                    span.set_attribute("rpc.grpc.status_code", code.value[0])
                    if code in _SERVER_ERRORS:
                        span.set_status(Status(StatusCode.ERROR, code.name))

        def traced(behaviour: Callable[..., Any], request: Any, ctx: grpc.ServicerContext) -> Any:
            with tracing(ctx) as failed:
                result = behaviour(request, ctx)
                failed[0] = False
                return result

        def traced_stream(behaviour: Callable[..., Any], request: Any, ctx: Any) -> Any:
            def generate() -> Iterator[Any]:
                with tracing(ctx) as failed:
                    yield from behaviour(request, ctx)
                    failed[0] = False

            return generate()

        return wrap_handler(handler, traced, traced_stream)


def server_interceptors() -> list[grpc.ServerInterceptor[Any, Any]]:
    """What ``GrpcServer`` puts in front of every call: a span (once tracing is configured),
    then the call's metrics."""
    tracing = [TracingServerInterceptor()] if tracing_configured() else []
    return [*tracing, MetricsInterceptor()]


class TracingClientInterceptor(UnaryUnaryClientBase, UnaryStreamClientBase):
    """A client span per outgoing call, and ``traceparent`` in its metadata.

    Our own because the instrumentation's client interceptor implements its own
    interface (``grpcext``), which cannot sit in ``grpc.intercept_channel``
    beside the chassis' propagating interceptor.
    """

    def _call(
        self,
        continuation: Callable[..., Any],
        details: grpc.ClientCallDetails,
        request: Any,
        *,
        stream: bool = False,
    ) -> Any:
        method = details.method
        service, name = split_method(method)
        with tracer().start_as_current_span(
            method.lstrip("/"),
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            metadata = [*(details.metadata or ()), *carrier.items()]
            outcome = continuation(_with_metadata(details, metadata), request)
            if stream:
                # A stream's status is known only when it ends (asking would wait for it,
                # and a follower's stream may never end): the span covers its start.
                return outcome
            code = outcome.code() if hasattr(outcome, "code") else None
            if isinstance(code, grpc.StatusCode):
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                if code is not grpc.StatusCode.OK:
                    span.set_status(Status(StatusCode.ERROR, code.name))
            return outcome

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return self._call(continuation, client_call_details, request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return self._call(continuation, client_call_details, request, stream=True)


def _with_metadata(details: grpc.ClientCallDetails, metadata: list[Any]) -> ClientCallDetails:
    return ClientCallDetails(
        details.method,
        details.timeout,
        metadata,
        details.credentials,
        getattr(details, "wait_for_ready", None),
        getattr(details, "compression", None),
    )


def client_interceptors() -> list[Any]:
    """What ``open_channel`` puts on every channel once tracing is configured."""
    return [TracingClientInterceptor()] if tracing_configured() else []
