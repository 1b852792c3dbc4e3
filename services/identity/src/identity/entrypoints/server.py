"""``astra-identity``: serve identity over gRPC, apply its migrations, or administer it.

Commands:
  serve               (default) serve IdentityService
  migrate             apply the database migrations
  register-client ID  register a service client and print its secret once (JSON on stdout)
  rotate-signing-key  sign with a new key from now on
  generate-kek        write a new key-encryption key file (IDENTITY_KEY_ENCRYPTION_KEY_FILE)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import structlog
from astra.identity.v1 import identity_pb2, identity_pb2_grpc
from chassis.auth import AccessPolicy, AuthInterceptor, declared_scopes
from chassis.db.retry import DATABASE_UNAVAILABLE
from chassis.grpc.interceptors import CallInterceptor
from chassis.grpc.server import GrpcServer, ServerOptions, ServiceBinding
from chassis.kernel.errors import AlreadyExists
from chassis.kernel.ids import new_id
from chassis.logging import configure_logging
from chassis.metrics import serve_metrics
from chassis.multiprocess import supervise
from chassis.runtime import tune_gc
from chassis.tracing import configure_tracing

from identity.adapters.crypto import generate_key_encryption_key
from identity.bootstrap import ERROR_DOMAIN, Identity, bootstrap, migrate
from identity.config import IdentitySettings
from identity.domain.model import ClientSpec
from identity.entrypoints.grpc_api import IdentityServicer
from identity.service_layer import use_cases

SERVICE = identity_pb2.DESCRIPTOR.services_by_name["IdentityService"]


def build_server(identity: Identity, settings: IdentitySettings) -> GrpcServer:
    servicer = IdentityServicer(identity)
    server = GrpcServer(
        [
            ServiceBinding(
                SERVICE.full_name,
                lambda s: identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, s),
            )
        ],
        ServerOptions.from_settings(settings),
        interceptors=[
            CallInterceptor(ERROR_DOMAIN, transient_errors=DATABASE_UNAVAILABLE),
            AuthInterceptor(identity.verifier, AccessPolicy.for_services(SERVICE)),
        ],
    )
    server.on_stop(identity.close)
    return server


def _register_client(args: argparse.Namespace, settings: IdentitySettings) -> None:
    identity = bootstrap(settings)
    try:
        scopes = tuple(args.scope) if args.scope else tuple(sorted(declared_scopes()))
        spec = ClientSpec(args.client_id, args.name or args.client_id, scopes)
        try:
            client, secret = use_cases.register_client(identity.deps, spec)
        except AlreadyExists:
            if not args.reset_secret:
                raise
            client, secret = use_cases.get_client(identity.deps, spec.id), ""
        if not secret and args.reset_secret:
            secret = use_cases.reset_client_secret(identity.deps, spec.id)
        out = {"client_id": client.id, "scopes": list(client.allowed_scopes)}
        if secret:
            out["client_secret"] = secret
        else:
            out["note"] = "client already registered; its secret is not shown again"
        print(json.dumps(out), flush=True)
    finally:
        identity.close()


def _generate_kek(args: argparse.Namespace) -> None:
    path = Path(args.out)
    if path.exists():
        if args.if_missing:
            return
        raise SystemExit(f"{path} exists; not overwriting a key-encryption key")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 from the start: never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(generate_key_encryption_key() + "\n")
    print(f"key-encryption key written to {path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="astra-identity", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve IdentityService (the default)")
    commands.add_parser("migrate", help="apply the database migrations")
    register = commands.add_parser("register-client", help="register a service client")
    register.add_argument("client_id", help='e.g. "cli_dev"')
    register.add_argument("--name", default="", help="display name (default: the id)")
    register.add_argument(
        "--scope", action="append", help="an allowed scope (repeat); default: every scope"
    )
    register.add_argument(
        "--reset-secret",
        action="store_true",
        help="if the client exists, give it a new secret and print it",
    )
    commands.add_parser("rotate-signing-key", help="sign with a new key from now on")
    kek = commands.add_parser("generate-kek", help="write a new key-encryption key file")
    kek.add_argument("--out", required=True, help="file to create (mode 0600)")
    kek.add_argument("--if-missing", action="store_true", help="do nothing if the file exists")
    args = parser.parse_args(argv)
    command = args.command or "serve"
    if command == "generate-kek":
        _generate_kek(args)
        return
    settings = IdentitySettings()
    quiet = command in ("register-client", "rotate-signing-key")
    configure_logging("identity", "WARNING" if quiet else settings.log_level)
    log = structlog.get_logger("identity")
    if command == "migrate":
        migrate(settings.database_url)
        log.info("migrations applied")
        return
    if command == "register-client":
        _register_client(args, settings)
        return
    if command == "rotate-signing-key":
        identity = bootstrap(settings)
        rotation = use_cases.rotate_signing_key(identity.deps, new_id("rot"))
        print(json.dumps({"kid": rotation.key.kid}), flush=True)
        identity.close()
        return
    configure_tracing("identity")
    if settings.processes > 1:
        if settings.migrate_on_start:
            migrate(settings.database_url)
        raise SystemExit(supervise(settings, "identity.entrypoints.server"))
    identity = bootstrap(settings)
    server = build_server(identity, settings)
    serve_metrics(server, settings.grpc_host, settings.metrics_port)
    tune_gc()
    port = server.start()
    log.info("identity serving", port=port, database=_safe_url(settings.database_url))
    server.serve_forever()


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    main()
