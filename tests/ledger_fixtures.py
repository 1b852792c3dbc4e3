"""Ledger fixtures: a fresh migrated database, the ledger in-process, and its gRPC server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from astra.ledger.v1 import ledger_pb2_grpc
from astra_testkit.postgres import PostgresServer
from ledger.bootstrap import Ledger, bootstrap, migrate
from ledger.config import LedgerSettings
from ledger.entrypoints.server import build_server


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
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield ledger_pb2_grpc.LedgerServiceStub(channel)
    channel.close()
    server.server.stop(0)
