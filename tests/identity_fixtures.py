"""Identity fixtures: a fresh migrated database, identity in-process, its gRPC server, an admin.

The secrets are hashed as in production (a keyed hash costs microseconds).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from astra.identity.v1 import identity_pb2_grpc
from astra_testkit.postgres import PostgresServer
from astra_testkit.tls import tls_channel, tls_files, tls_settings
from chassis.auth import ClientCredentialsTokenSource, declared_scopes
from chassis.grpc.client import open_channel
from chassis.grpc.server import GrpcServer
from cryptography.fernet import Fernet
from identity.bootstrap import Identity, bootstrap, migrate
from identity.config import IdentitySettings
from identity.domain.model import ClientSpec
from identity.entrypoints.server import build_server
from identity.service_layer import use_cases

from tests.ledger_fixtures import MovableClock

TEST_KEK = Fernet.generate_key().decode()
ADMIN_ID = "cli_test_admin"


def identity_settings(database_url: str, **overrides: object) -> IdentitySettings:
    values: dict[str, object] = {
        "database_url": database_url,
        "grpc_port": 0,
        "migrate_on_start": False,
        "db_pool_size": 4,
        "key_encryption_key": TEST_KEK,
        **tls_settings("identity"),
        **overrides,
    }
    return IdentitySettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def identity_db_url(postgres: PostgresServer) -> Iterator[str]:
    url = postgres.fresh_database_url("identity", migrate)
    yield url
    postgres.drop_url(url)


@pytest.fixture
def identity_clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def identity(identity_db_url: str, identity_clock: MovableClock) -> Iterator[Identity]:
    app = bootstrap(identity_settings(identity_db_url), identity_clock)
    yield app
    app.close()


@dataclass
class IdentityServer:
    target: str
    server: GrpcServer
    admin_id: str
    admin_secret: str

    def channel(self, *, client_id: str = "", secret: str = "") -> grpc.Channel:
        """A channel to identity authenticated as the given client (the admin by default)."""
        source = ClientCredentialsTokenSource(
            self.target,
            client_id or self.admin_id,
            secret or self.admin_secret,
            audience="identity",
            tls=tls_files(),
        )
        return open_channel(self.target, tls=tls_files(), default_timeout=30, token_source=source)

    def anonymous(self) -> grpc.Channel:
        """A channel with the developer's certificate and no token."""
        return tls_channel(self.target)


@pytest.fixture
def identity_server(identity: Identity) -> Iterator[IdentityServer]:
    # The first admin is registered the way an operator does (astra-identity register-client).
    _, secret = use_cases.register_client(
        identity.deps, ClientSpec(ADMIN_ID, "Test admin", tuple(sorted(declared_scopes())))
    )
    server = build_server(identity, identity.settings)
    port = server.start()
    yield IdentityServer(f"127.0.0.1:{port}", server, ADMIN_ID, secret)
    server.server.stop(0)


@pytest.fixture
def identity_stub(
    identity_server: IdentityServer,
) -> Iterator[identity_pb2_grpc.IdentityServiceStub]:
    channel = identity_server.channel()
    yield identity_pb2_grpc.IdentityServiceStub(channel)
    channel.close()
