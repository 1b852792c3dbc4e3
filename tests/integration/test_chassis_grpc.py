"""The shared server bootstrap: error mapping, health, reflection, drain."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc
import pytest
from astra.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from astra_testkit.tls import tls_channel, tls_files
from chassis.grpc.interceptors import CallInterceptor, RequestLimits
from chassis.grpc.server import GrpcServer, ServerOptions, ServiceBinding
from chassis.grpc.status import bad_request, error_info, reason_of, retry_delay
from chassis.kernel.errors import FieldViolation, InvalidArgument, ResourceExhausted
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from ledger.bootstrap import bootstrap
from ledger.entrypoints.server import SERVICE_NAME, build_server

from tests.ledger_fixtures import ledger_settings, service_metadata

SERVICE = "astra.test.v1.Probe"


def _identity(data: bytes) -> bytes:
    return data


def _boom(request: bytes, context: grpc.ServicerContext) -> bytes:
    raise RuntimeError("secret internals: password=hunter2")


def _invalid(request: bytes, context: grpc.ServicerContext) -> bytes:
    raise InvalidArgument([FieldViolation("thing.size", "must be positive", "TOO_SMALL")])


def _echo_id(request: ledger_pb2.GetAccountRequest, context: grpc.ServicerContext) -> bytes:
    return request.account_id.encode()


def _register(server: grpc.Server) -> None:
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=_identity, response_serializer=_identity
        )
        for name, fn in (("Boom", _boom), ("Invalid", _invalid))
    }
    # A method whose requests are decoded as a message, as every generated servicer's are.
    handlers["Decode"] = grpc.unary_unary_rpc_method_handler(
        _echo_id,
        request_deserializer=ledger_pb2.GetAccountRequest.FromString,
        response_serializer=_identity,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


@pytest.fixture
def probe() -> Iterator[grpc.Channel]:
    server = GrpcServer(
        [ServiceBinding(SERVICE, _register)],
        ServerOptions(port=0, tls=tls_files("ledger")),
        interceptors=[CallInterceptor("test.astra")],
    )
    port = server.start()
    channel = tls_channel(f"127.0.0.1:{port}")
    yield channel
    channel.close()
    server.stop(0)


def _call(channel: grpc.Channel, method: str) -> grpc.RpcError:
    stub = channel.unary_unary(
        f"/{SERVICE}/{method}", request_serializer=_identity, response_deserializer=_identity
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub(b"", metadata=(("x-request-id", "req-123"),))
    return caught.value


def test_unexpected_errors_become_internal_with_a_correlation_id_and_no_internals(
    probe: grpc.Channel,
) -> None:
    error = _call(probe, "Boom")
    assert error.code() == grpc.StatusCode.INTERNAL
    info = error_info(error)
    assert info is not None
    assert info.metadata["correlation_id"] == "req-123"
    details = error.details() or ""
    debug = getattr(error, "debug_error_string", lambda: "")()
    wire = f"{details} {debug} {error.trailing_metadata()}"
    for leaked in ("hunter2", "RuntimeError", "Traceback", "secret internals"):
        assert leaked not in wire
    assert "req-123" in details


def test_domain_errors_carry_error_info_and_field_violations(probe: grpc.Channel) -> None:
    error = _call(probe, "Invalid")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(error)
    assert info is not None
    assert (info.reason, info.domain, info.metadata["request_id"]) == (
        "INVALID_ARGUMENT",
        "test.astra",
        "req-123",
    )
    violations = bad_request(error)
    assert violations is not None
    assert [(v.field, v.reason) for v in violations.field_violations] == [
        ("thing.size", "TOO_SMALL")
    ]


def test_health_per_service_and_overall_then_draining(probe: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(probe)
    for service in ("", SERVICE):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as unknown:
        health.Check(health_pb2.HealthCheckRequest(service="nope.Service"))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_ledger_service(postgres: object, ledger_db_url: str) -> None:
    ledger = bootstrap(ledger_settings(ledger_db_url))
    server = build_server(ledger, ledger.settings)
    port = server.start()
    try:
        with tls_channel(f"127.0.0.1:{port}") as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            replies = stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
            names = {s.name for r in replies for s in r.list_services_response.service}
        assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names
    finally:
        server.stop(0)


def test_database_down_is_unavailable_not_internal(postgres: object) -> None:
    # Nothing listens on this port: every call finds the database unreachable.
    ledger = bootstrap(ledger_settings("postgresql://postgres@127.0.0.1:1/none", db_pool_size=1))
    server = build_server(ledger, ledger.settings)
    port = server.start()
    try:
        with tls_channel(f"127.0.0.1:{port}") as channel:
            stub = ledger_pb2_grpc.LedgerServiceStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                stub.GetAccount(
                    ledger_pb2.GetAccountRequest(account_id="acct_a"),
                    timeout=30,
                    metadata=service_metadata(),
                )
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        info = error_info(caught.value)
        assert info is not None
        assert info.reason == "DATABASE_UNAVAILABLE"
    finally:
        server.stop(0)


# Bodies that are no GetAccountRequest: a bad tag, invalid UTF-8 in field 1, a truncated
# varint, a length beyond the body, groups nested past the decoder's limit.
UNDECODABLE = [
    b"\xff",
    b"\x0a\x01\xff",
    b"\x08\xff\xff",
    b"\x0a\x7fab",
    b"\x0b" * 200 + b"\x0c" * 200,
]


def test_a_body_that_does_not_decode_is_invalid_argument_without_a_stack_trace(
    probe: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    stub = probe.unary_unary(f"/{SERVICE}/Decode", _identity, _identity)
    assert stub(ledger_pb2.GetAccountRequest(account_id="acct_a").SerializeToString()) == b"acct_a"
    codes = []
    for body in UNDECODABLE:
        with pytest.raises(grpc.RpcError) as caught:
            stub(body, metadata=(("x-request-id", "req-bad"),))
        codes.append(caught.value.code())
        info = error_info(caught.value)
        assert info is not None
        assert (info.reason, info.metadata["request_id"]) == ("UNDECODABLE_REQUEST", "req-bad")
        assert "astra.ledger.v1.GetAccountRequest" in (caught.value.details() or "")
    assert codes == [grpc.StatusCode.INVALID_ARGUMENT] * len(UNDECODABLE)
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "Exception deserializing" not in logged
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_every_service_method_refuses_an_undecodable_body_before_auth_and_stays_healthy(
    postgres: object, ledger_db_url: str
) -> None:
    ledger = bootstrap(ledger_settings(ledger_db_url))
    server = build_server(ledger, ledger.settings)
    port = server.start()
    try:
        with tls_channel(f"127.0.0.1:{port}") as channel:
            seen = {}
            for method in ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].methods:
                call = channel.unary_unary(f"/{SERVICE_NAME}/{method.name}", _identity, _identity)
                with pytest.raises(grpc.RpcError) as caught:
                    call(b"\xff", timeout=30)  # no token either: the body is refused first
                seen[method.name] = (caught.value.code(), reason_of(caught.value))
            assert set(seen.values()) == {
                (grpc.StatusCode.INVALID_ARGUMENT, "UNDECODABLE_REQUEST")
            }, seen
            # A body that decodes still meets auth; health and reflection still answer.
            stub = ledger_pb2_grpc.LedgerServiceStub(channel)
            with pytest.raises(grpc.RpcError) as anonymous:
                stub.GetAccount(ledger_pb2.GetAccountRequest(account_id="acct_a"), timeout=30)
            assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=30
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        server.stop(0)


# --- request sizes per method, and the time to wait after RESOURCE_EXHAUSTED --------------


def _busy(request: bytes, context: grpc.ServicerContext) -> bytes:
    raise ResourceExhausted("RATE_LIMITED", "too many calls", retry_after=1.5)


def _register_limited(server: grpc.Server) -> None:
    decode = {
        name: grpc.unary_unary_rpc_method_handler(
            _echo_id,
            request_deserializer=ledger_pb2.GetAccountRequest.FromString,
            response_serializer=_identity,
        )
        for name in ("Small", "Batch")
    }
    decode["Busy"] = grpc.unary_unary_rpc_method_handler(
        _busy, request_deserializer=_identity, response_serializer=_identity
    )
    decode["Large"] = grpc.unary_unary_rpc_method_handler(
        lambda request, context: b"r" * 200_000,
        request_deserializer=_identity,
        response_serializer=_identity,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, decode),))


@pytest.fixture
def limited_probe() -> Iterator[grpc.Channel]:
    limits = RequestLimits(
        default_bytes=1024, batch_bytes=64 * 1024, batch_methods={f"/{SERVICE}/Batch"}
    )
    server = GrpcServer(
        [ServiceBinding(SERVICE, _register_limited)],
        ServerOptions(port=0, tls=tls_files("ledger"), max_message_bytes=limits.largest),
        interceptors=[CallInterceptor("test.astra", request_limits=limits)],
    )
    port = server.start()
    channel = tls_channel(f"127.0.0.1:{port}")
    yield channel
    channel.close()
    server.stop(0)


def test_a_request_over_its_methods_limit_is_refused_and_batches_take_more(
    limited_probe: grpc.Channel,
) -> None:
    body = ledger_pb2.GetAccountRequest(account_id="a" * 4000).SerializeToString()

    def call(method: str, data: bytes) -> bytes:
        stub = limited_probe.unary_unary(
            f"/{SERVICE}/{method}", request_serializer=_identity, response_deserializer=_identity
        )
        return bytes(stub(data, timeout=10))

    with pytest.raises(grpc.RpcError) as caught:
        call("Small", body)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason_of(caught.value) == "REQUEST_TOO_LARGE"
    small = ledger_pb2.GetAccountRequest(account_id="a" * 500).SerializeToString()
    assert call("Small", small) == b"a" * 500  # under its limit: served
    assert call("Batch", body) == b"a" * 4000
    # Past the server's own limit (the largest), gRPC itself refuses.
    with pytest.raises(grpc.RpcError) as too_big:
        call("Batch", ledger_pb2.GetAccountRequest(account_id="a" * 70_000).SerializeToString())
    assert too_big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Only requests are held small: a large answer (a page of a list) still goes out.
    assert len(call("Large", b"")) == 200_000


def test_resource_exhausted_says_when_to_retry(limited_probe: grpc.Channel) -> None:
    stub = limited_probe.unary_unary(
        f"/{SERVICE}/Busy", request_serializer=_identity, response_deserializer=_identity
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub(b"", timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason_of(caught.value) == "RATE_LIMITED"
    assert retry_delay(caught.value) == pytest.approx(1.5)
