"""A gRPC server whose one method returns an empty message: the framework's own ceiling.

``python -m bench.empty_server PORT`` serves it bare: a sync server with the
same thread pool size as our services, so the comparison with them is fair.
Both speak mutual TLS with the files ``BENCH_TLS_CERT_FILE``, ``BENCH_TLS_KEY_FILE``
and ``BENCH_TLS_CA_FILE`` name, as every server of the suite does.

``python -m bench.empty_server PORT --chassis`` serves the same method through
the chassis every service runs: ``GrpcServer`` (health, reflection, tracing and
metrics interceptors) with the request-id, logging and error-mapping
interceptor and token verification in front, set up as the ledger sets them up
(WARNING logs, GC tuning, a JWKS file from ``BENCH_AUTH_*``). The method asks
for the scope that moving money does, so every call verifies a signed token.
What a call costs here and not bare is what every service call costs before
its own work starts.
"""

from __future__ import annotations

import argparse
import os
import threading
from concurrent import futures

import grpc
from chassis.auth import AccessPolicy, AuthInterceptor, build_verifier
from chassis.auth.policy import MethodRule
from chassis.grpc.interceptors import CallInterceptor
from chassis.grpc.server import GrpcServer, ServerOptions, ServiceBinding
from chassis.logging import configure_logging
from chassis.runtime import tune_gc
from chassis.tls import TlsFiles, server_credentials
from chassis.tracing import configure_tracing

SERVICE = "astra.bench.v1.Empty"
METHOD = f"/{SERVICE}/Call"
# The scope a single transfer requires (astra.ledger.v1.LedgerService/CreateTransfer).
CHASSIS_SCOPE = "ledger.transfers.write"


def _raw(data: bytes) -> bytes:
    return data


def _empty(_request: bytes, _context: grpc.ServicerContext) -> bytes:
    return b""


def _register(server: grpc.Server) -> None:
    handler = grpc.unary_unary_rpc_method_handler(
        _empty, request_deserializer=_raw, response_serializer=_raw
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Call": handler}),)
    )


def _tls() -> TlsFiles:
    return TlsFiles(
        os.environ["BENCH_TLS_CERT_FILE"],
        os.environ["BENCH_TLS_KEY_FILE"],
        os.environ["BENCH_TLS_CA_FILE"],
    )


def serve_bare(port: int) -> None:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=32), options=[("grpc.so_reuseport", 0)]
    )
    _register(server)
    server.add_secure_port(f"127.0.0.1:{port}", server_credentials(_tls()))
    server.start()
    print("ready", flush=True)
    threading.Event().wait()


def serve_chassis(port: int) -> None:
    configure_logging("bench-empty", "WARNING")
    configure_tracing("bench-empty")
    verifier = build_verifier(
        issuer=os.environ["BENCH_AUTH_ISSUER"],
        audience=os.environ["BENCH_AUTH_AUDIENCE"],
        identity_target="",
        jwks_file=os.environ["BENCH_AUTH_JWKS_FILE"],
    )
    policy = AccessPolicy({METHOD: MethodRule(False, frozenset({CHASSIS_SCOPE}))})
    server = GrpcServer(
        [ServiceBinding(SERVICE, _register)],
        ServerOptions(port=port, tls=_tls()),
        interceptors=[CallInterceptor("bench.astra"), AuthInterceptor(verifier, policy)],
    )
    tune_gc()
    server.start()
    print("ready", flush=True)
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.empty_server", description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("--chassis", action="store_true", help="serve through the chassis")
    args = parser.parse_args()
    if args.chassis:
        serve_chassis(args.port)
    else:
        serve_bare(args.port)


if __name__ == "__main__":
    main()
