"""Ledger fixtures: a fresh migrated database, the ledger in-process, and its gRPC server."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from astra.ledger.v1 import ledger_pb2_grpc
from astra_testkit.postgres import PostgresServer
from astra_testkit.tls import tls_env, tls_files, tls_settings
from chassis.auth.testing import TokenMint
from chassis.grpc.client import open_channel
from ledger.bootstrap import Ledger, bootstrap, migrate
from ledger.config import LedgerSettings
from ledger.entrypoints.server import build_server

# One token mint for the whole test run. In-process ledgers and ledger processes
# verify its tokens from a JWKS file (as a deployment with mounted keys would),
# so ledger tests need no identity service.
LEDGER_AUTH = TokenMint()
_JWKS_DIR = Path(tempfile.mkdtemp(prefix="astra-test-jwks-"))
atexit.register(shutil.rmtree, _JWKS_DIR, True)
LEDGER_JWKS_FILE = LEDGER_AUTH.write_jwks(_JWKS_DIR / "jwks.json")


def ledger_auth_env() -> dict[str, str]:
    """The LEDGER_* variables that make a ledger process accept LEDGER_AUTH's tokens, and
    serve with the ledger's certificate of the suite CA."""
    return {
        "LEDGER_AUTH_ISSUER": LEDGER_AUTH.issuer,
        "LEDGER_AUTH_AUDIENCE": LEDGER_AUTH.audience,
        "LEDGER_AUTH_JWKS_FILE": str(LEDGER_JWKS_FILE),
        **tls_env("LEDGER", "ledger"),
    }


def service_token(scopes: Iterable[str] | None = None) -> str:
    """A service client's token (every scope of the contracts unless given)."""
    return LEDGER_AUTH.token(scopes)


def service_metadata(scopes: Iterable[str] | None = None) -> tuple[tuple[str, str], ...]:
    return LEDGER_AUTH.metadata(scopes)


def authorized_channel(target: str) -> grpc.Channel:
    """A channel whose calls carry a service token with every scope."""
    return open_channel(target, tls=tls_files(), default_timeout=300.0, token_source=service_token)


class MovableClock:
    """A clock tests can move forward (hold expiry, as-of balances)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime.now(UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


@pytest.fixture
def ledger_db_url(postgres: PostgresServer) -> Iterator[str]:
    url = postgres.fresh_database_url("ledger", migrate)
    yield url
    postgres.drop_url(url)


def ledger_settings(database_url: str, **overrides: object) -> LedgerSettings:
    values: dict[str, object] = {
        "database_url": database_url,
        "grpc_port": 0,
        "migrate_on_start": False,
        "db_pool_size": 8,
        "auth_issuer": LEDGER_AUTH.issuer,
        "auth_audience": LEDGER_AUTH.audience,
        "auth_jwks_file": str(LEDGER_JWKS_FILE),
        **tls_settings("ledger"),
        **overrides,
    }
    return LedgerSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def ledger(ledger_db_url: str, clock: MovableClock) -> Iterator[Ledger]:
    app = bootstrap(ledger_settings(ledger_db_url), clock=clock)
    yield app
    app.close()


@pytest.fixture
def ledger_stub(ledger: Ledger) -> Iterator[ledger_pb2_grpc.LedgerServiceStub]:
    server = build_server(ledger, ledger.settings)
    port = server.start()
    channel = authorized_channel(f"127.0.0.1:{port}")
    yield ledger_pb2_grpc.LedgerServiceStub(channel)
    channel.close()
    server.server.stop(0)
