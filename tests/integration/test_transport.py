"""Mutual TLS as an attacker meets it: in-process servers with real certificates.

Plaintext, a client certificate of another CA and no client certificate are
refused at the handshake; a server on identity's address whose certificate is
of the right CA but does not name identity cannot hand the verifier its keys;
the server knows which part called; and certificates replaced under a steady
stream of calls serve every new connection without a call failing.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from astra.identity.v1 import identity_pb2 as ipb
from astra.identity.v1 import identity_pb2_grpc
from astra_testkit.ports import free_port
from astra_testkit.tls import suite_ca, tls_channel, tls_env, tls_files
from astra_testkit.waiting import wait_until
from chassis.auth import AccessPolicy, AuthInterceptor, build_verifier
from chassis.auth.keys import IdentityKeySource
from chassis.auth.policy import MethodRule
from chassis.auth.testing import TokenMint
from chassis.events import relay_main
from chassis.events.relay_settings import RelaySettings
from chassis.grpc.context import current_call
from chassis.grpc.interceptors import CallInterceptor
from chassis.grpc.server import GrpcServer, ServerOptions, ServiceBinding, is_serving
from chassis.tls import ReloadingChannel, TlsFiles, secure_channel
from chassis.tls.devca import DevCa, ensure_dev_ca
from cryptography import x509
from google.protobuf import json_format
from grpc_health.v1 import health_pb2

SERVICE = "astra.test.v1.Peer"
WHO = f"/{SERVICE}/Who"
GUARDED = f"/{SERVICE}/Guarded"
SCOPE = "ledger.transfers.write"


def _raw(data: bytes) -> bytes:
    return data


def _who(_request: bytes, _context: grpc.ServicerContext) -> bytes:
    call = current_call()
    return ((call.peer if call else None) or "").encode()


def _client_serial(_request: bytes, context: grpc.ServicerContext) -> bytes:
    """The serial of the certificate the client showed, in hex."""
    pem: Any = context.auth_context()["x509_pem_cert"][0]
    return format(x509.load_pem_x509_certificate(pem).serial_number, "x").encode()


def _register(server: grpc.Server) -> None:
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            behaviour, request_deserializer=_raw, response_serializer=_raw
        )
        for name, behaviour in (("Who", _who), ("Guarded", _who), ("Serial", _client_serial))
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


def _server(tls: TlsFiles, port: int = 0, *extra: grpc.ServerInterceptor[Any, Any]) -> GrpcServer:
    server = GrpcServer(
        [ServiceBinding(SERVICE, _register)],
        ServerOptions(port=port, tls=tls),
        interceptors=[CallInterceptor("test.astra"), *extra],
    )
    server.start()
    return server


def _who_via(channel: grpc.Channel) -> str:
    call = channel.unary_unary(WHO, request_serializer=_raw, response_deserializer=_raw)
    return bytes(call(b"", timeout=10)).decode()


@pytest.fixture
def ledger_like() -> Iterator[str]:
    """A server with the ledger's certificate of the suite CA."""
    server = _server(tls_files("ledger"))
    yield f"127.0.0.1:{server.port}"
    server.stop(0)


def _refused(channel: grpc.Channel) -> grpc.RpcError:
    with channel, pytest.raises(grpc.RpcError) as refused:
        _who_via(channel)
    return refused.value


# --- who may connect ----------------------------------------------------------------


def test_the_server_sees_which_part_called(ledger_like: str) -> None:
    with tls_channel(ledger_like, part="payments") as channel:
        assert _who_via(channel) == "spiffe://astra/payments"
    with tls_channel(ledger_like) as channel:
        assert _who_via(channel) == "spiffe://astra/client"


def test_a_plaintext_client_is_refused(ledger_like: str) -> None:
    assert _refused(grpc.insecure_channel(ledger_like)).code() == grpc.StatusCode.UNAVAILABLE


def test_a_client_without_a_certificate_is_refused(ledger_like: str) -> None:
    ca = Path(tls_files().ca_file).read_bytes()
    channel = grpc.secure_channel(ledger_like, grpc.ssl_channel_credentials(root_certificates=ca))
    assert _refused(channel).code() == grpc.StatusCode.UNAVAILABLE


def test_a_client_certificate_of_another_ca_is_refused(ledger_like: str, tmp_path: Path) -> None:
    other = ensure_dev_ca(tmp_path).client
    # It trusts our CA (so the server's certificate is fine); ours does not trust its.
    stranger = TlsFiles(other.cert_file, other.key_file, tls_files().ca_file)
    assert _refused(secure_channel(ledger_like, stranger)).code() == grpc.StatusCode.UNAVAILABLE


def test_a_server_that_does_not_carry_the_expected_name_is_refused(ledger_like: str) -> None:
    with tls_channel(ledger_like, server_name="ledger") as channel:
        assert _who_via(channel) == "spiffe://astra/client"
    error = _refused(tls_channel(ledger_like, server_name="identity"))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


# --- who may serve the keys -----------------------------------------------------------


IDENTITY_SERVICE = "astra.identity.v1.IdentityService"


def _key_server(mint: TokenMint, tls: TlsFiles, port: int) -> GrpcServer:
    """A server answering identity's GetPublicKeys with ``mint``'s keys (identity's, or an
    attacker's) and its ListRevocations with nothing revoked."""

    def public_keys(
        _request: ipb.GetPublicKeysRequest, _context: grpc.ServicerContext
    ) -> ipb.GetPublicKeysResponse:
        keys = [
            json_format.ParseDict(dict(key), ipb.JsonWebKey(), ignore_unknown_fields=True)
            for key in mint.key_document().keys
        ]
        return ipb.GetPublicKeysResponse(keys=keys, issuer=mint.issuer)

    def revocations(
        _request: ipb.ListRevocationsRequest, _context: grpc.ServicerContext
    ) -> ipb.ListRevocationsResponse:
        response = ipb.ListRevocationsResponse()  # nothing revoked
        response.as_of_time.GetCurrentTime()
        return response

    handlers = {
        "GetPublicKeys": grpc.unary_unary_rpc_method_handler(
            public_keys,
            request_deserializer=ipb.GetPublicKeysRequest.FromString,
            response_serializer=ipb.GetPublicKeysResponse.SerializeToString,
        ),
        "ListRevocations": grpc.unary_unary_rpc_method_handler(
            revocations,
            request_deserializer=ipb.ListRevocationsRequest.FromString,
            response_serializer=ipb.ListRevocationsResponse.SerializeToString,
        ),
    }

    def register(server: grpc.Server) -> None:
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(IDENTITY_SERVICE, handlers),)
        )

    server = GrpcServer(
        [ServiceBinding(IDENTITY_SERVICE, register)], ServerOptions(port=port, tls=tls)
    )
    server.start()
    return server


def test_an_impersonated_identity_cannot_supply_keys() -> None:
    identity_mint, attacker = TokenMint(), TokenMint()
    attacker.rotate()  # a kid the verifier has not seen: it goes and asks for the keys
    port = free_port()
    identity_target = f"127.0.0.1:{port}"
    verifier = build_verifier(
        issuer=identity_mint.issuer,
        audience=identity_mint.audience,
        identity_target=identity_target,
        tls=tls_files("ledger"),
        min_refresh_interval=0,
    )
    policy = AccessPolicy({GUARDED: MethodRule(False, frozenset({SCOPE}))})
    guarded = _server(tls_files("ledger"), 0, AuthInterceptor(verifier, policy))
    call = tls_channel(f"127.0.0.1:{guarded.port}").unary_unary(
        GUARDED, request_serializer=_raw, response_deserializer=_raw
    )
    identity = _key_server(identity_mint, tls_files("identity"), port)
    try:
        # The real identity serves the keys: its tokens pass.
        assert (
            call(b"", metadata=identity_mint.metadata([SCOPE]), timeout=10)
            == b"spiffe://astra/client"
        )
        identity.stop(0)
        # Something else of the suite takes identity's address, with a certificate of the
        # right CA (the ledger's) and the attacker's keys behind it.
        impostor = _key_server(attacker, tls_files("ledger"), port)
        try:
            with tls_channel(identity_target) as plain_dial:
                # Dialled without the name check it would hand its keys to anyone.
                served = identity_pb2_grpc.IdentityServiceStub(plain_dial).GetPublicKeys(
                    ipb.GetPublicKeysRequest(), timeout=10
                )
                assert attacker.kid in [k.kid for k in served.keys]
            with pytest.raises(grpc.RpcError) as fetch:
                IdentityKeySource(identity_target, tls=tls_files("ledger")).fetch()
            assert fetch.value.code() == grpc.StatusCode.UNAVAILABLE
            with pytest.raises(grpc.RpcError) as refused:
                call(b"", metadata=attacker.metadata([SCOPE]), timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        finally:
            impostor.stop(0)
    finally:
        guarded.stop(0)


# --- rotation under load ----------------------------------------------------------------


def _served_serial(target: str, ca: DevCa) -> int:
    """The serial of the certificate a fresh handshake with ``target`` is shown."""
    context = ssl.create_default_context(cafile=ca.ca_file)
    client = ca.client
    context.load_cert_chain(client.cert_file, client.key_file)
    context.set_alpn_protocols(["h2"])
    host, port = target.rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@dataclass
class Load:
    """Calls made one after another until stopped: a few per new connection (``fresh``), or
    all on one long-lived channel that follows its files (recording the client serials the
    server saw)."""

    target: str
    files: TlsFiles
    fresh: bool
    calls: int = 0
    failures: list[str] = field(default_factory=list)
    serials: list[int] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        if self.fresh:
            while not self.stop.is_set():
                with secure_channel(self.target, self.files) as channel:
                    for _ in range(5):
                        self._call(channel)
        else:
            with ReloadingChannel(self.target, self.files, [], check_interval=0.05) as channel:
                while not self.stop.is_set():
                    self._call(channel)

    def _call(self, channel: grpc.Channel) -> None:
        serial = channel.unary_unary(
            f"/{SERVICE}/Serial", request_serializer=_raw, response_deserializer=_raw
        )
        try:
            self.serials.append(int(bytes(serial(b"", timeout=10)), 16))
            self.calls += 1
        except grpc.RpcError as error:
            self.failures.append(f"{error.code()}: {error.details()}")


def test_replaced_certificates_serve_new_connections_and_no_call_fails(tmp_path: Path) -> None:
    ca = ensure_dev_ca(tmp_path)
    server = _server(ca.files("ledger"))
    target = f"127.0.0.1:{server.port}"
    client_serial = _certificate_serial(ca.client)
    fresh, steady = Load(target, ca.client, fresh=True), Load(target, ca.client, fresh=False)
    workers = [threading.Thread(target=load.run, daemon=True) for load in (fresh, steady)]
    try:
        first = _served_serial(target, ca)
        for worker in workers:
            worker.start()
        wait_until(lambda: min(fresh.calls, steady.calls) >= 50, 60, "calls before rotating")
        # The server's certificate, twice: every new connection is shown the new one.
        second = ca.issue("ledger").serial_number
        wait_until(lambda: _served_serial(target, ca) == second, 60, "the new certificate served")
        after = fresh.calls
        wait_until(lambda: fresh.calls >= after + 50, 60, "calls after the rotation")
        third = ca.issue("ledger").serial_number
        wait_until(lambda: _served_serial(target, ca) == third, 60, "the third certificate served")
        # The client's: the long-lived channel shows the new one without being reopened.
        new_client_serial = ca.issue("client").serial_number
        wait_until(
            lambda: new_client_serial in steady.serials[-5:], 60, "the new client certificate"
        )
    finally:
        for load in (fresh, steady):
            load.stop.set()
        for worker in workers:
            worker.join(30)
        server.stop(0)
    assert len({first, second, third}) == 3
    assert fresh.failures == []
    assert steady.failures == []
    assert steady.serials[0] == client_serial != new_client_serial
    assert steady.serials[-1] == new_client_serial


def _certificate_serial(files: TlsFiles) -> int:
    return x509.load_pem_x509_certificate(Path(files.cert_file).read_bytes()).serial_number


def test_the_suite_ca_is_the_session_ca(dev_ca: DevCa) -> None:
    assert dev_ca == suite_ca()
    assert Path(dev_ca.files("identity").cert_file).is_file()


# --- the exec probe ----------------------------------------------------------------------


def _health_command(port: int) -> int:
    """``astra-ledger health`` against ``port``, with the ledger's certificate; its exit code."""
    env = {**os.environ, **tls_env("LEDGER", "ledger"), "LEDGER_GRPC_PORT": str(port)}
    command = [str(Path(sys.executable).parent / "astra-ledger"), "health"]
    return subprocess.run(command, env=env, capture_output=True, timeout=60, check=False).returncode


def test_the_health_probe_asks_over_mutual_tls_and_only_the_named_service() -> None:
    ledger = _server(tls_files("ledger"))
    impostor = _server(tls_files("payments"))
    try:
        assert is_serving(f"127.0.0.1:{ledger.port}", tls_files(), server_name="ledger")
        # Serving, but not the ledger: the probe says so.
        assert not is_serving(f"127.0.0.1:{impostor.port}", tls_files(), server_name="ledger")
        assert _health_command(ledger.port) == 0  # astra-ledger health: the same, as a command
    finally:
        ledger.stop(0)
        impostor.stop(0)


def test_the_relay_health_command_asks_its_port_over_mutual_tls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    env = {
        "RELAY_DATABASE_URL": "sqlite://",
        "RELAY_CONTEXT": "ledger",
        "RELAY_HEALTH_PORT": str(port),
        **tls_env("RELAY", "relay"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    server, servicer = relay_main._health_server(RelaySettings())
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    try:
        with pytest.raises(SystemExit) as serving:
            relay_main.main(["health"])
        assert serving.value.code == 0
    finally:
        server.stop(0).wait()
    with pytest.raises(SystemExit) as gone:
        relay_main.main(["health"])
    assert gone.value.code == 1
