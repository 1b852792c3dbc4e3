"""Ledger fixtures: a fresh migrated database, the ledger in-process, and its gRPC server."""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from astra.ledger.v1 import ledger_pb2_grpc
from astra_testkit.postgres import PostgresServer
from astra_testkit.processes import ServiceProcess
from astra_testkit.tls import tls_env, tls_files, tls_settings
from chassis.auth.testing import TokenMint
from chassis.grpc.client import open_channel
from ledger.bootstrap import Ledger, bootstrap, migrate
from ledger.config import LedgerSettings
from ledger.entrypoints.server import LEDGER, build_server

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


def ledger_service_process(
    database_url: str, port: int, log_dir: Path, name: str = "ledger", **env: str
) -> ServiceProcess:
    """``astra-ledger serve`` as a real process on ``database_url`` and ``port`` (not yet
    started; ``start()`` it, and again after a kill: same port, same log); ``env`` adds
    or overrides LEDGER_* variables."""
    return ServiceProcess(
        name,
        [str(Path(sys.executable).parent / "astra-ledger"), "serve"],
        {
            "LEDGER_DATABASE_URL": database_url,
            "LEDGER_GRPC_PORT": str(port),
            "LEDGER_MIGRATE_ON_START": "true",
            "LEDGER_GRACE_SECONDS": "2",
            "LEDGER_METRICS_PORT": "0",  # tests never take the default 9102
            **ledger_auth_env(),
            **env,
        },
        log_dir=log_dir,
    )


def ledger_cli(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    url: str,
    *argv: str,
) -> tuple[int, str]:
    """``astra-ledger <argv>`` in this process (the console script's own ``main``, without a
    second interpreter's start-up): its exit code and what it printed."""
    for name, value in ledger_auth_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LEDGER_DATABASE_URL", url)
    monkeypatch.setenv("LEDGER_MIGRATE_ON_START", "false")
    # The process's logging stays the test run's (pytest's capture closes under it).
    monkeypatch.setattr("chassis.service.configure_logging", lambda *_args, **_kwargs: None)
    capsys.readouterr()
    try:
        LEDGER.main(list(argv))
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    out = capsys.readouterr()
    return code, out.out + out.err


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
