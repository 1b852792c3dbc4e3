"""Server interceptors shared by every service.

``CallInterceptor`` is the outermost layer of every call: it gives the call a
request id (the caller's ``x-request-id`` or a new one), binds it and the peer
(the SPIFFE id of the client's certificate: which part called) to the logs and
the call context, maps domain errors to statuses with rich details (AIP-193),
turns anything unexpected into INTERNAL with a correlation id (the stack trace
goes to the log, never to the wire) and writes one access log line.

It also decodes the request: a body that is not the method's request message
is the client's mistake, answered INVALID_ARGUMENT (``UNDECODABLE_REQUEST``)
like any other refusal. gRPC's own handling (INTERNAL "Exception deserializing
request!" and a stack trace in the log) never runs: the decoder given to gRPC
does not raise, it hands the handler an ``UndecodableRequest`` instead.

And it bounds the request's size per method (``RequestLimits``): small for
ordinary and open methods, large only for the batch methods a service names.
The server's own limit is the largest of them; a body over its method's limit
is refused (RESOURCE_EXHAUSTED, ``REQUEST_TOO_LARGE``) before it is decoded.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import structlog

from chassis.grpc.bases import ServerInterceptorBase
from chassis.grpc.context import (
    CallContext,
    reset_current_call,
    set_current_call,
    time_remaining,
)
from chassis.grpc.status import domain_error_status, internal_error_status, unavailable_status
from chassis.kernel.errors import DomainError, ErrorCategory
from chassis.tls import peer_spiffe_id

_log = structlog.get_logger("chassis.grpc")
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# Methods that stay open and quiet: health probes and reflection.
INFRASTRUCTURE_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

Behaviour = Callable[[Any, grpc.ServicerContext], Any]
Around = Callable[[Behaviour, Any, grpc.ServicerContext], Any]


def wrap_handler(
    handler: grpc.RpcMethodHandler[Any, Any],
    around: Around,
    around_stream: Around | None = None,
    *,
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler[Any, Any]:
    """A copy of ``handler`` whose behaviour runs inside ``around`` (and, if given, whose
    requests are decoded by ``request_deserializer``)."""
    decode = request_deserializer or handler.request_deserializer
    if handler.unary_unary is not None:
        inner = handler.unary_unary
        return grpc.unary_unary_rpc_method_handler(
            lambda req, ctx: around(inner, req, ctx),
            request_deserializer=decode,
            response_serializer=handler.response_serializer,
        )
    streaming = around_stream or around
    if handler.unary_stream is not None:
        inner_us = handler.unary_stream
        return grpc.unary_stream_rpc_method_handler(
            lambda req, ctx: streaming(inner_us, req, ctx),
            request_deserializer=decode,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_unary is not None:
        inner_su = handler.stream_unary
        return grpc.stream_unary_rpc_method_handler(
            lambda req, ctx: around(inner_su, req, ctx),
            request_deserializer=decode,
            response_serializer=handler.response_serializer,
        )
    inner_ss: Any = handler.stream_stream
    return grpc.stream_stream_rpc_method_handler(
        lambda req, ctx: streaming(inner_ss, req, ctx),
        request_deserializer=decode,
        response_serializer=handler.response_serializer,
    )


@dataclass(frozen=True)
class RequestLimits:
    """The largest request body per method: ``batch_bytes`` for ``batch_methods`` (full paths,
    ``/astra.ledger.v1.LedgerService/CreateTransfers``), ``default_bytes`` for the rest."""

    default_bytes: int = 64 * 1024
    batch_bytes: int = 64 * 1024 * 1024
    batch_methods: Collection[str] = ()

    def for_method(self, method: str) -> int:
        return self.batch_bytes if method in self.batch_methods else self.default_bytes

    @property
    def largest(self) -> int:
        return max(self.default_bytes, self.batch_bytes if self.batch_methods else 0)


class UndecodableRequest:
    """What a request body that does not decode becomes, for the handler to refuse."""

    __slots__ = ("expected",)

    def __init__(self, expected: str) -> None:
        self.expected = expected


class OversizedRequest:
    """What a request body over its method's limit becomes (never decoded)."""

    __slots__ = ("limit", "size")

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit


def tolerant_deserializer(
    decode: Callable[[bytes], Any], max_bytes: int | None = None
) -> Callable[[bytes], Any]:
    """``decode`` that returns an ``UndecodableRequest`` where it would raise, and an
    ``OversizedRequest`` for a body longer than ``max_bytes``."""
    message_type = getattr(decode, "__self__", None)
    descriptor = getattr(message_type, "DESCRIPTOR", None)
    expected = getattr(descriptor, "full_name", "the method's request message")

    def decode_or_mark(data: bytes) -> Any:
        if max_bytes is not None and len(data) > max_bytes:
            return OversizedRequest(len(data), max_bytes)
        try:
            return decode(data)
        except Exception:  # whatever the decoder refuses is the client's body, not our fault
            return UndecodableRequest(expected)

    return decode_or_mark


def undecodable(request: UndecodableRequest) -> DomainError:
    return DomainError(
        "UNDECODABLE_REQUEST",
        f"the request body does not decode as {request.expected}",
        category=ErrorCategory.INVALID_ARGUMENT,
    )


def oversized(request: OversizedRequest) -> DomainError:
    return DomainError(
        "REQUEST_TOO_LARGE",
        f"the request body is {request.size} bytes; this method takes at most {request.limit}",
        category=ErrorCategory.RESOURCE_EXHAUSTED,
        metadata={"limit_bytes": str(request.limit)},
    )


def metadata_value(context: grpc.ServicerContext, key: str) -> str | None:
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return v if isinstance(v, str) else v.decode("utf-8", "replace")
    return None


class MethodInterceptor(ServerInterceptorBase):
    """An interceptor that wraps each method's handler once, not on every call.

    gRPC runs ``intercept_service`` for every call on the server's one polling
    thread; wrapping there costs every call an allocation of handlers and
    closures on that shared thread. Our interceptors only ever close over
    per-method data (names, labels, access rules) and read per-call data from
    the ServicerContext, so each method's wrapped handler is made on its first
    call and reused. Health and reflection pass through untouched.
    """

    def __init__(self) -> None:
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = continuation(handler_call_details)
        if handler is None or method.startswith(INFRASTRUCTURE_PREFIXES):
            return handler
        wrapped = self._wrapped[method] = self.wrap(method, handler)
        return wrapped

    def wrap(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        raise NotImplementedError


class CallInterceptor(MethodInterceptor):
    def __init__(
        self,
        error_domain: str,
        *,
        transient_errors: Sequence[type[BaseException]] = (),
        on_call_end: Callable[[str, grpc.StatusCode, float], None] | None = None,
        request_limits: RequestLimits | None = None,
        draining: threading.Event | None = None,
    ) -> None:
        super().__init__()
        self._limits = request_limits
        self._draining = draining
        self._domain = error_domain
        self._transient = tuple(transient_errors)
        self._on_call_end = on_call_end

    def wrap(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        decode = handler.request_deserializer
        # A single request is decoded by the marking decoder; streamed requests (none of
        # ours) keep gRPC's own handling.
        limit = self._limits.for_method(method) if self._limits is not None else None
        tolerant = (
            tolerant_deserializer(decode, limit)
            if decode is not None and not handler.request_streaming
            else None
        )
        return wrap_handler(
            handler,
            lambda behaviour, request, ctx: self._unary(method, behaviour, request, ctx),
            lambda behaviour, request, ctx: self._streaming(method, behaviour, request, ctx),
            request_deserializer=tolerant,
        )

    def _begin(self, method: str, context: grpc.ServicerContext) -> CallContext:
        given = metadata_value(context, "x-request-id")
        request_id = given if given and _VALID_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        remaining = time_remaining(context)
        deadline = time.monotonic() + remaining if remaining is not None else None
        return CallContext(
            request_id=request_id,
            method=method,
            deadline=deadline,
            peer=peer_spiffe_id(context),
            draining=self._draining,
        )

    @contextlib.contextmanager
    def _served(
        self, method: str, request: Any, context: grpc.ServicerContext, *, stream: bool = False
    ) -> Iterator[CallContext]:
        """The call's context bound, its refusals and failures mapped, its access log line."""
        call = self._begin(method, context)
        token = set_current_call(call)
        structlog.contextvars.bind_contextvars(
            request_id=call.request_id, method=method, peer=call.peer
        )
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            if isinstance(request, UndecodableRequest):
                raise undecodable(request)
            if isinstance(request, OversizedRequest):
                raise oversized(request)
            yield call
        except DomainError as error:
            status = domain_error_status(error, self._domain, call.request_id)
            code = status.code
            _log.info("rpc refused", reason=error.reason, code=code.name)
            context.abort_with_status(status)
        except self._transient as error:
            code = grpc.StatusCode.UNAVAILABLE
            _log.warning("rpc dependency unavailable", error=type(error).__name__)
            context.abort_with_status(unavailable_status(self._domain, "database", call.request_id))
        except GeneratorExit:
            # A stream whose client went away (cancelled, deadline): gRPC stopped reading it.
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as error:
            if _is_abort(context):
                code = _code_of(context) or grpc.StatusCode.UNKNOWN
                raise
            code = grpc.StatusCode.INTERNAL
            _log.exception("rpc failed unexpectedly", correlation_id=call.request_id)
            context.abort_with_status(internal_error_status(self._domain, call.request_id))
            raise AssertionError("abort_with_status returned") from error  # pragma: no cover
        finally:
            if stream and code is grpc.StatusCode.OK and not context.is_active():
                code = grpc.StatusCode.CANCELLED  # it ended because its client went away
            elapsed = time.perf_counter() - started
            _log.info(
                "rpc", code=code.name, duration_ms=round(elapsed * 1000, 3), **call.log_fields
            )
            if self._on_call_end is not None:
                self._on_call_end(method, code, elapsed)
            structlog.contextvars.unbind_contextvars("request_id", "method", "peer")
            reset_current_call(token)

    def _unary(
        self, method: str, behaviour: Behaviour, request: Any, context: grpc.ServicerContext
    ) -> Any:
        with self._served(method, request, context):
            return behaviour(request, context)

    def _streaming(
        self, method: str, behaviour: Behaviour, request: Any, context: grpc.ServicerContext
    ) -> Iterator[Any]:
        # Message by message, the same mapping around the whole stream: gRPC drives the
        # generator in the call's own contextvars context, so what it binds stays the call's.
        def generate() -> Iterator[Any]:
            with self._served(method, request, context, stream=True):
                yield from behaviour(request, context)

        return generate()


def _code_of(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    code = getattr(context, "code", None)
    return code() if callable(code) else None


def _is_abort(context: grpc.ServicerContext) -> bool:
    """True when the handler already aborted the call with a status of its own."""
    code = _code_of(context)
    return code is not None and code != grpc.StatusCode.OK
